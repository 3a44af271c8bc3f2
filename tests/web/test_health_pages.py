"""Credential health on the dashboard as plain form posts: Settings → Private Registry (health, Check
now, the expiry field), the Overview (health, tag-moved notice with Deploy) and the project page
(failing services marked). A real registry whose password changes; the browser tests drive the same
pages in Chromium."""

from __future__ import annotations

import functools
import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from guara.context import AppContext
from guara.core import audit, health_checks
from guara.core.credential_health import Transition
from guara.store.models import utcnow
from tests.lab import Lab
from tests.lab.lab import OwnRegistry, own_registry
from tests.web.support import WebUser, create_project, text_of

pytestmark = pytest.mark.lab

PASSWORD = "dashboard-deploy-secret"  # noqa: S105


@pytest.fixture
def registry(lab: Lab, tmp_path: Path) -> Iterator[OwnRegistry]:
    with own_registry(lab, tmp_path / "own", {"deployer": PASSWORD}) as own:
        own.registry.push_image("acme/api:v1")
        yield own


def _service(owner: WebUser, context: AppContext, registry: OwnRegistry, **extra: str) -> tuple[str, str]:
    project_id = create_project(context, owner.email)
    response = owner.post_form(
        f"/projects/{project_id}/services/new",
        {
            "name": "api",
            "build_method": "docker_image",
            "image": registry.registry.ref("acme/api:v1"),
            "registry": registry.registry.host,
            "username": "deployer",
            "password": PASSWORD,
            **extra,
        },
    )
    assert response.status_code == 303, text_of(response.text)
    service_id = response.headers["location"].split("/")[2].split("?")[0]
    return project_id, service_id


def _health(page: str) -> str:
    match = re.search(r'data-health="(\w+)"', page)
    assert match, "no health shown"
    return match.group(1)


def test_settings_show_health_and_check_now_notices_a_changed_password(
    owner: WebUser, lab_context: AppContext, registry: OwnRegistry
) -> None:
    project_id, service_id = _service(owner, lab_context, registry)
    settings = owner.http.get(f"/services/{service_id}/settings").text
    assert _health(settings) == "passing"
    assert "verified just now" in text_of(settings)
    assert "Check now" in settings

    registry.set_users({"deployer": "rotated-by-the-registry-admin"})
    checked = owner.post_form(f"/services/{service_id}/settings/registry-credentials/check", {})
    assert checked.status_code == 303
    assert checked.headers["location"].endswith("?saved=checked#private-registry")
    settings = owner.http.get(checked.headers["location"]).text
    assert _health(settings) == "failing"
    shown = text_of(settings)
    assert re.search(r"failing since \d\d:\d\d UTC — auth_failed: .*update the password or token", shown), (
        shown
    )
    overview = owner.http.get(f"/services/{service_id}").text
    assert _health(overview) == "failing"
    project = owner.http.get(f"/projects/{project_id}").text
    assert "data-failing" in project and "failing (auth_failed)" in text_of(project)
    assert PASSWORD not in settings + overview + project


def test_check_now_over_the_limit_is_a_soft_error(
    owner: WebUser, lab_context: AppContext, registry: OwnRegistry
) -> None:
    _project_id, service_id = _service(owner, lab_context, registry)  # one preflight
    statuses = [
        owner.post_form(f"/services/{service_id}/settings/registry-credentials/check", {}).status_code
        for _ in range(5)
    ]
    assert statuses == [303, 303, 303, 303, 429]
    limited = owner.post_form(f"/services/{service_id}/settings/registry-credentials/check", {})
    assert limited.status_code == 429 and "connection tests in the last minute" in text_of(limited.text)


def test_expiry_date_is_saved_warned_and_checked(
    owner: WebUser, lab_context: AppContext, registry: OwnRegistry
) -> None:
    _project_id, service_id = _service(owner, lab_context, registry)
    soon = (utcnow().date() + timedelta(days=5)).isoformat()
    form = {"registry": registry.registry.host, "skip_verification": "on", "expires_on": soon}
    saved = owner.post_form(f"/services/{service_id}/settings/registry-credentials", form)
    assert saved.status_code == 303, text_of(saved.text)
    settings = owner.http.get(f"/services/{service_id}/settings").text
    assert f'value="{soon}"' in settings
    assert f"expires_soon: these credentials expire on {soon} (in 5 days)" in text_of(settings)
    bad = owner.post_form(
        f"/services/{service_id}/settings/registry-credentials", {**form, "expires_on": "soon-ish"}
    )
    assert bad.status_code == 422
    assert 'id="expires-on-error"' in bad.text and "YYYY-MM-DD" in text_of(bad.text)
    assert 'value="soon-ish"' in bad.text
    cleared = owner.post_form(
        f"/services/{service_id}/settings/registry-credentials", {**form, "expires_on": ""}
    )
    assert cleared.status_code == 303
    assert "expires_soon" not in owner.http.get(f"/services/{service_id}/settings").text


def test_overview_says_when_the_tag_moved_with_a_deploy_button(
    owner: WebUser, lab_context: AppContext, registry: OwnRegistry
) -> None:
    project_id, service_id = _service(owner, lab_context, registry)
    assert owner.post_form(f"/services/{service_id}/deployments", {}).status_code == 303
    deadline = time.monotonic() + 30
    while 'data-status="succeeded"' not in owner.http.get(f"/services/{service_id}").text:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    deployed = registry.registry.images["acme/api:v1"]
    moved = registry.registry.push_image("acme/api:v1", files={"etc/release": b"2\n"})
    portal = owner.http.portal
    assert portal is not None
    portal.call(functools.partial(health_checks.check_service, lab_context, service_id=uuid.UUID(service_id)))
    overview = owner.http.get(f"/services/{service_id}").text
    assert "data-tag-moved" in overview
    assert f"v1 now points to {moved} — deployed {deployed}" in text_of(overview)
    assert f"Deploy {moved[:19]}…" in text_of(overview)
    assert "tag moved" in text_of(owner.http.get(f"/projects/{project_id}").text)


def test_auto_deploy_is_a_deploy_setting(
    owner: WebUser, lab_context: AppContext, registry: OwnRegistry
) -> None:
    project_id, service_id = _service(owner, lab_context, registry)
    form = {"image": registry.registry.ref("acme/api:v1"), "platform": "linux/amd64", "port": "8080"}
    saved = owner.post_form(
        f"/services/{service_id}/settings/deploy", {**form, "auto_deploy_on_tag_move": "on"}
    )
    assert saved.status_code == 303, text_of(saved.text)
    page = owner.http.get(f"/services/{service_id}/settings").text
    assert re.search(r'name="auto_deploy_on_tag_move" value="on"[^>]* checked', page)
    audit = text_of(owner.http.get(f"/projects/{project_id}/audit-logs").text)
    assert "auto deploy on tag move from off to on" in audit
    assert owner.post_form(f"/services/{service_id}/settings/deploy", form).status_code == 303
    assert " checked" not in re.search(
        r'name="auto_deploy_on_tag_move"[^>]*>', owner.http.get(f"/services/{service_id}/settings").text
    ).group(0)  # type: ignore[union-attr]


def test_notifications_page_sets_the_webhook_and_shows_guard_refusals(
    owner: WebUser, lab_context: AppContext
) -> None:
    project_id = create_project(lab_context, owner.email)
    assert "/webhook" in owner.http.get(f"/projects/{project_id}").text
    page = owner.http.get(f"/projects/{project_id}/webhook")
    assert page.status_code == 200 and "Save webhook" in page.text and "Deliveries" not in page.text
    secret = "whsec-dashboard-canary-123456"
    bad = owner.post_form(f"/projects/{project_id}/webhook", {"url": "ftp://hooks.example", "secret": secret})
    assert bad.status_code == 422 and 'aria-invalid="true"' in bad.text and secret not in bad.text
    short = owner.post_form(
        f"/projects/{project_id}/webhook", {"url": "https://hooks.example", "secret": "short"}
    )
    assert short.status_code == 422 and "16 to 512" in text_of(short.text)
    # Link-local (cloud metadata): refused by the guard whatever GUARA_SSRF_ALLOW exempts here.
    url = "http://169.254.169.254/latest/hook"
    saved = owner.post_form(f"/projects/{project_id}/webhook", {"url": url, "secret": secret})
    assert saved.status_code == 303
    shown = owner.http.get(saved.headers["location"]).text
    assert url in shown and secret not in shown and "Webhook saved" in text_of(shown)

    event = audit.CheckFailed("ghcr.io", "auth_failed", "the registry rejected these credentials")
    transition = Transition(uuid.uuid4(), uuid.UUID(project_id), "api", (event,))
    portal = owner.http.portal
    assert portal is not None

    async def deliver() -> None:
        lab_context.webhooks.dispatch(lab_context, transition)
        await lab_context.webhooks.wait_idle()

    portal.call(deliver)
    log = owner.http.get(f"/projects/{project_id}/webhook").text
    assert 'data-status="failed"' in log
    assert "ssrf_blocked: 169.254.169.254" in text_of(log)
    removed = owner.post_form(f"/projects/{project_id}/webhook/remove", {})
    assert removed.status_code == 303
    assert "Webhook removed" in text_of(owner.http.get(removed.headers["location"]).text)
