"""The credentials flow as plain form posts (no JavaScript) and the dashboard's JSON endpoints.

Real registries from the lab; the browser tests (test_browser.py) drive the same pages with JS.
"""

from __future__ import annotations

import re
import secrets
import uuid

import pytest
from sqlalchemy import select

from guara.context import AppContext
from guara.core.validation import MAX_REGISTRY_SECRET
from guara.store.models import RegistryCredential
from tests.lab import Lab
from tests.support import make_client
from tests.web.support import WebUser, create_project, text_of

pytestmark = pytest.mark.lab


def _wizard(user: WebUser, project_id: str, **data: str) -> tuple[int, str, str]:
    response = user.post_form(f"/projects/{project_id}/services/new", data)
    return response.status_code, response.text, response.headers.get("location", "")


def _section_hidden(page: str) -> bool:
    match = re.search(r'<details id="private-registry"[^>]*>', page)
    assert match, "the wizard has no credentials section"
    return " hidden" in match.group(0)


def _creds(lab: Lab, password: str | None = None) -> dict[str, str]:
    return {
        "registry": lab.token.host,
        "username": "alice",
        "password": lab.token.users["alice"] if password is None else password,
    }


def _stored(context: AppContext, service_id: str) -> RegistryCredential | None:
    with context.db.session() as session:
        row = session.scalar(
            select(RegistryCredential).where(RegistryCredential.service_id == uuid.UUID(service_id))
        )
        if row is not None:
            session.expunge(row)
        return row


def test_wizard_every_field_has_a_label(owner: WebUser, lab_context: AppContext) -> None:
    project_id = create_project(lab_context, owner.email)
    page = owner.http.get(f"/projects/{project_id}/services/new").text
    ids = re.findall(r'<input id="([^"]+)"', page) + re.findall(r'<input type="\w+" id="([^"]+)"', page)
    assert {"service-name", "image", "cred-registry", "cred-username", "cred-password", "cred-skip"} <= set(
        ids
    )
    for field_id in ids:
        assert f'<label for="{field_id}"' in page, field_id
    assert "not available yet" in page
    assert _section_hidden(page)


def test_check_image_without_js_shows_the_section_only_for_private_images(
    owner: WebUser, lab_context: AppContext, lab: Lab
) -> None:
    project_id = create_project(lab_context, owner.email)
    status, page, _ = _wizard(owner, project_id, image=lab.token.ref("acme/api:v1"), action="check")
    assert status == 200
    assert not _section_hidden(page)
    assert f'name="registry" type="text" value="{lab.token.host}"' in page
    assert "private" in text_of(page)
    status, page, _ = _wizard(owner, project_id, image=lab.token.ref("public/hello:latest"), action="check")
    assert _section_hidden(page)
    assert "needs no credentials" in text_of(page)
    status, page, _ = _wizard(owner, project_id, image="Not A/Ref::", action="check")
    assert status == 422
    assert "invalid image reference" in text_of(page)


def test_wizard_verified_save_without_js(owner: WebUser, lab_context: AppContext, lab: Lab) -> None:
    project_id = create_project(lab_context, owner.email)
    image = lab.token.ref("acme/api:v1")
    status, page, _ = _wizard(owner, project_id, name="api", image=image, action="test", **_creds(lab))
    assert status == 200
    assert "Connection works" in text_of(page)
    assert lab.token.users["alice"] not in page
    status, _page, location = _wizard(owner, project_id, name="api", image=image, **_creds(lab))
    assert status == 303, _page
    overview = text_of(owner.http.get(location).text)
    assert f"{lab.token.host} as a•••" in overview
    assert "verified just now" in overview


def test_wizard_failed_verification_keeps_nothing_then_override(
    owner: WebUser, lab_context: AppContext, lab: Lab
) -> None:
    project_id = create_project(lab_context, owner.email)
    image = lab.token.ref("acme/api:v1")
    status, page, _ = _wizard(owner, project_id, name="api", image=image, **_creds(lab, "wrong"))
    assert status == 422
    text = text_of(page)
    assert "The registry rejected these credentials" in text
    assert "auth_failed" in text
    assert "Nothing was saved" in text
    assert "type it again" in text  # the password is not echoed back
    assert 'value="wrong"' not in page
    assert "No services yet" in owner.http.get(f"/projects/{project_id}").text
    status, _page, location = _wizard(
        owner, project_id, name="api", image=image, skip_verification="on", **_creds(lab, "wrong")
    )
    assert status == 303
    assert "saved without verifying" in text_of(owner.http.get(location).text)


def test_wizard_field_errors(owner: WebUser, lab_context: AppContext, lab: Lab) -> None:
    project_id = create_project(lab_context, owner.email)
    image = lab.token.ref("acme/api:v1")
    status, page, _ = _wizard(owner, project_id, name="Bad Name", image=image)
    assert status == 422
    assert re.search(r'id="service-name-error"[^>]*>service name must be', page)
    status, page, _ = _wizard(owner, project_id, name="api", image=image, username="alice")
    assert status == 422
    assert re.search(r'id="cred-password-error"[^>]*>enter both a username and a password', page)
    status, page, _ = _wizard(
        owner, project_id, name="api", image=image, **{**_creds(lab), "registry": lab.basic.host}
    )
    assert status == 422
    assert re.search(r'id="cred-registry-error"[^>]*>the registry .* does not match', page)
    status, _, _ = _wizard(owner, project_id, name="api", image=image)
    assert status == 303
    status, page, _ = _wizard(owner, project_id, name="api", image=image)
    assert status == 409
    assert "already exists" in page


def _service_with_credentials(
    owner: WebUser, lab_context: AppContext, lab: Lab, *, username: str = "alice", skip: bool = False
) -> tuple[str, str]:
    project_id = create_project(lab_context, owner.email)
    data = {"name": "api", "image": lab.token.ref("acme/api:v1"), **_creds(lab), "username": username}
    if skip:
        data["skip_verification"] = "on"
    status, page, location = _wizard(owner, project_id, **data)
    assert status == 303, page
    return project_id, location.split("/")[2].split("?")[0]


def test_settings_edit_keeps_the_stored_password(owner: WebUser, lab_context: AppContext, lab: Lab) -> None:
    # bob + alice's password: wrong together, saved without verifying.
    project_id, service_id = _service_with_credentials(owner, lab_context, lab, username="bob", skip=True)
    before = _stored(lab_context, service_id)
    assert before is not None and before.verification == "overridden"
    settings = text_of(owner.http.get(f"/services/{service_id}/settings").text)
    assert "Private Registry" in settings and "saved without verifying" in settings
    page = owner.http.get(f"/services/{service_id}/settings").text
    assert re.search(r"data-current-username[^>]*>•••<", page) and "••••••••" in settings
    assert "bob" not in settings
    path = f"/services/{service_id}/settings/registry-credentials"
    tested = owner.post_form(path, {"registry": lab.token.host, "username": "alice", "action": "test"})
    assert tested.status_code == 200
    assert "Connection works" in text_of(tested.text)
    saved = owner.post_form(path, {"registry": lab.token.host, "username": "alice", "password": ""})
    assert saved.status_code == 303
    assert saved.headers["location"].endswith("?saved=passed#private-registry")
    after = _stored(lab_context, service_id)
    assert after is not None
    assert after.username == "alice" and after.verification == "passed"
    assert after.password_sealed == before.password_sealed  # the password was kept, not re-sealed
    check = owner.post_json("/-/test-connection", {"service_id": service_id, "registry": lab.token.host})
    assert check.json()["ok"] is True, check.text
    assert "verified just now" in text_of(owner.http.get(saved.headers["location"]).text)


def test_remove_needs_a_confirmation_and_is_audited(
    owner: WebUser, lab_context: AppContext, lab: Lab
) -> None:
    project_id, service_id = _service_with_credentials(owner, lab_context, lab)
    confirm = owner.http.get(f"/services/{service_id}/settings/registry-credentials/remove")
    text = text_of(confirm.text)
    assert "anonymous pulls" in text and "next deploy will fail" in text
    assert _stored(lab_context, service_id) is not None  # asking is not removing
    removed = owner.post_form(f"/services/{service_id}/settings/registry-credentials/remove", {})
    assert removed.status_code == 303
    page = text_of(owner.http.get(removed.headers["location"]).text)
    assert "+ Add private registry credentials" in page
    assert "Credentials removed" in page
    assert _stored(lab_context, service_id) is None
    audit = text_of(owner.http.get(f"/projects/{project_id}/audit-logs").text)
    assert "Removed registry credentials" in audit and "owner@example.com" in audit
    assert "Test Connection passed" in audit
    assert lab.token.users["alice"] not in audit


def test_audit_log_is_paginated(owner: WebUser, lab_context: AppContext, lab: Lab) -> None:
    project_id, service_id = _service_with_credentials(owner, lab_context, lab, skip=True)
    path = f"/services/{service_id}/settings/registry-credentials"
    owner.post_form(path, {"registry": lab.token.host, "skip_verification": "on"})
    owner.post_form(f"{path}/remove", {})
    first = owner.http.get(f"/projects/{project_id}/audit-logs?limit=2").text
    assert first.count("<tr data-entry=") == 2
    assert "Removed registry credentials" in first and "overridden" in first
    older = re.search(r'href="([^"]+)" rel="next"', first)
    assert older
    second = owner.http.get(older.group(1).replace("&amp;", "&")).text
    assert second.count("<tr data-entry=") == 1
    assert "Created the service with registry credentials" in text_of(second)
    assert 'rel="next"' not in second
    assert owner.http.get(f"/projects/{project_id}/audit-logs?cursor=abc").status_code == 422


def test_json_endpoints_need_the_csrf_header(owner: WebUser, lab: Lab) -> None:
    body = {"image": lab.token.ref("acme/api:v1")}
    refused = owner.http.post("/-/image-check", json=body)
    assert refused.status_code == 401
    assert refused.json()["code"] == "csrf_failed"
    checked = owner.post_json("/-/image-check", body)
    assert checked.json()["valid"] is True
    assert checked.json()["registry"] == lab.token.host
    invalid = owner.post_json("/-/image-check", {"image": "acme/Api:v1"})
    assert invalid.json()["valid"] is False and invalid.json()["message"]
    probed = owner.post_json("/-/image-check", {**body, "probe": True}).json()
    assert probed["access"] == "private"
    public = owner.post_json("/-/image-check", {"image": lab.token.ref("public/hello:latest"), "probe": True})
    assert public.json()["access"] == "public"


def test_test_connection_endpoint_gives_friendly_results_and_a_soft_limit(owner: WebUser, lab: Lab) -> None:
    image = lab.token.ref("acme/api:v1")
    wrong = owner.post_json("/-/test-connection", {"image": image, **_creds(lab, "nope")}).json()
    assert wrong["ok"] is False and wrong["code"] == "auth_failed"
    assert wrong["title"] == "The registry rejected these credentials"
    assert wrong["hint"] and wrong["message"] and wrong["elapsed_ms"] >= 0
    half = owner.post_json("/-/test-connection", {"image": image, "username": "alice"})
    assert half.status_code == 422 and half.json()["field"] == "password"
    for _ in range(4):
        assert owner.post_json("/-/test-connection", {"image": image, **_creds(lab)}).json()["ok"] is True
    limited = owner.post_json("/-/test-connection", {"image": image, **_creds(lab)})
    assert limited.status_code == 429
    assert limited.json()["soft"] is True
    assert re.fullmatch(
        r"You've run 5 tests in the last minute — try again in \d+ seconds", limited.json()["title"]
    )
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_another_users_service_is_a_404(lab_context: AppContext, lab: Lab) -> None:
    with make_client(lab_context) as http:
        owner = WebUser.sign_in(http, lab_context, "owner@example.com")
        _project_id, service_id = _service_with_credentials(owner, lab_context, lab)
    with make_client(lab_context) as http:
        stranger = WebUser.sign_in(http, lab_context, "stranger@example.com")
        for path in ("", "/settings", "/settings/registry-credentials/remove"):
            page = stranger.http.get(f"/services/{service_id}{path}")
            assert page.status_code == 404
            assert "Not found" in page.text
        removed = stranger.post_form(f"/services/{service_id}/settings/registry-credentials/remove", {})
        assert removed.status_code == 404
        tested = stranger.post_json("/-/test-connection", {"service_id": service_id})
        assert tested.status_code == 404
    assert _stored(lab_context, service_id) is not None


def test_test_connection_endpoint_uses_the_api_statuses(
    owner: WebUser, lab_context: AppContext, lab: Lab
) -> None:
    _project_id, service_id = _service_with_credentials(owner, lab_context, lab)
    with lab_context.db.session() as session:
        row = session.get(RegistryCredential, uuid.UUID(service_id))
        assert row is not None
        # Another nonce: the envelope still parses but no longer opens.
        tag, version, _nonce, sealed = row.password_sealed.split(".")
        row.password_sealed = ".".join((tag, version, secrets.token_urlsafe(12), sealed))
    unreadable = owner.post_json("/-/test-connection", {"service_id": service_id})
    assert unreadable.status_code == 409
    assert unreadable.json()["code"] == "credentials_unreadable"
    assert unreadable.json()["ok"] is False
    missing = owner.post_json("/-/test-connection", {"service_id": str(uuid.uuid4())})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_passwords_longer_than_the_registry_limit_are_refused(
    owner: WebUser, lab_context: AppContext, lab: Lab
) -> None:
    image = lab.token.ref("acme/api:v1")
    longest = owner.post_json(
        "/-/test-connection", {**_creds(lab, "p" * MAX_REGISTRY_SECRET), "image": image}
    )
    assert longest.status_code == 200 and longest.json()["code"] == "auth_failed"
    too_long = "p" * (MAX_REGISTRY_SECRET + 1)
    tested = owner.post_json("/-/test-connection", {**_creds(lab, too_long), "image": image})
    assert tested.status_code == 422
    assert too_long not in tested.text
    project_id = create_project(lab_context, owner.email)
    wizard = owner.http.get(f"/projects/{project_id}/services/new").text
    assert f'type="password" maxlength="{MAX_REGISTRY_SECRET}"' in wizard
    status, page, _ = _wizard(owner, project_id, name="api", image=image, **_creds(lab, too_long))
    assert status == 422
    assert too_long not in page


def test_a_rate_limited_form_test_is_a_429_with_the_soft_notice(
    owner: WebUser, lab_context: AppContext, lab: Lab
) -> None:
    project_id = create_project(lab_context, owner.email)
    form = {"name": "api", "image": lab.token.ref("acme/api:v1"), "action": "test", **_creds(lab, "wrong")}
    for _ in range(5):
        status, page, _ = _wizard(owner, project_id, **form)
        assert status == 422 and "The registry rejected these credentials" in text_of(page)
    status, page, _ = _wizard(owner, project_id, **form)
    assert status == 429
    assert re.search(r"You've run 5 tests in the last minute — try again in \d+ seconds", text_of(page))
    assert 'data-code="rate_limited"' in page and "New service" in text_of(page)


def test_platforms_endpoint_reads_the_image_with_the_stored_credentials(
    owner: WebUser, lab_context: AppContext, lab: Lab
) -> None:
    project_id = create_project(lab_context, owner.email)
    created = owner.post_form(
        f"/projects/{project_id}/services/new",
        {
            "name": "multi",
            "image": lab.token.ref("acme/multi:v1"),
            **_creds(lab),
            "skip_verification": "on",
            "action": "save",
        },
    )
    assert created.status_code == 303, created.text
    service_id = created.headers["location"].split("/")[2].split("?")[0]
    answer = owner.post_json("/-/platforms", {"service_id": service_id})
    assert answer.json() == {"platforms": ["linux/amd64", "linux/arm64"], "code": None, "message": ""}
    with make_client(lab_context) as other_http:
        stranger = WebUser.sign_in(other_http, lab_context, "stranger@example.com")
        refused = stranger.post_json("/-/platforms", {"service_id": service_id})
        assert refused.status_code == 404 and refused.json()["code"] == "not_found"
    unknown = owner.post_json("/-/platforms", {"service_id": str(uuid.uuid4())})
    assert unknown.status_code == 404
