"""Findings of the security review, each pinned by a test: answers match what was stored, bad input
is a 4xx, pages carry protective headers, sign-in is throttled, deploys are bounded."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import ORMExecuteState, Session

from guara.app import create_app
from guara.context import AppContext
from tests.conftest import build_context
from tests.support import ApiUser, make_client, settled_deployment


def _service(client: ApiUser) -> tuple[str, str]:
    project_id = client.project()
    return project_id, client.service(project_id, image="ghcr.io/acme/api:v1")


def test_a_failed_commit_is_never_reported_as_success(
    client: ApiUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, service_id = _service(client)
    saved = client.put(
        f"/services/{service_id}/registry-credentials",
        json={"registry": "ghcr.io", "username": "bob", "password": "pw", "skip_verification": True},
    )
    assert saved.status_code == 200
    real_commit = Session.commit

    def note_deletes(state: ORMExecuteState) -> None:
        if state.is_delete:
            state.session.info["deleted"] = True

    def locked_after_delete(self: Session) -> None:
        if self.info.pop("deleted", False):  # e.g. SQLite's "database is locked" after its busy timeout
            raise OperationalError("COMMIT", {}, Exception("database is locked"))
        real_commit(self)

    event.listen(Session, "do_orm_execute", note_deletes)
    monkeypatch.setattr(Session, "commit", locked_after_delete)
    try:
        response = client.delete(f"/services/{service_id}/registry-credentials")
    finally:
        monkeypatch.setattr(Session, "commit", real_commit)
        event.remove(Session, "do_orm_execute", note_deletes)
    assert response.status_code == 503
    assert client.get(f"/services/{service_id}").json()["registry_credentials"] is not None


def test_a_password_that_is_not_unicode_text_is_a_422(client: ApiUser) -> None:
    _, service_id = _service(client)
    body = '{"registry":"ghcr.io","username":"bob","password":"ab\\ud800cd","skip_verification":true}'
    response = client.put(
        f"/services/{service_id}/registry-credentials",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"


@pytest.mark.parametrize("cursor", ["\u00b2", "-1", "1e3", "9" * 30])
def test_malformed_audit_cursors_are_a_422(client: ApiUser, cursor: str) -> None:
    project_id, _ = _service(client)
    response = client.get(f"/projects/{project_id}/audit-logs", params={"cursor": cursor})
    assert response.status_code == 422


def test_an_oversized_chunked_body_is_a_413(client: ApiUser) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name":"' + b"a" * (300 * 1024) + b'"}'

    response = client.post("/projects", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert client.get("/projects").json() == []


def test_a_username_needs_a_password(client: ApiUser) -> None:
    response = client.post("/registry/test", json={"image": "ghcr.io/acme/api:v1", "username": "bob"})
    assert response.status_code == 422
    assert response.json()["field"] == "password"


def test_protective_headers_on_pages_and_api(client: ApiUser, context: AppContext) -> None:
    for path in ("/login", "/api/v1/projects"):
        response = client.http.get(path, headers=client.headers)
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Cache-Control"] == "no-store"


def test_secure_cookies_can_be_forced_behind_a_tls_proxy(settings_env: dict[str, str]) -> None:
    context = build_context({**settings_env, "GUARA_COOKIE_SECURE": "true"})
    with make_client(context) as http:
        page = http.get("/setup")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        assert "secure" in page.headers["set-cookie"].lower()
        response = http.post(
            "/setup",
            data={"email": "a@example.com", "password": "long enough", "csrf_token": token.group(1)},
            follow_redirects=False,
        )
        assert "secure" in response.headers["set-cookie"].lower()
    context.db.dispose()


def test_sign_in_is_throttled_per_account(context: AppContext) -> None:
    with make_client(context) as http:
        ApiUser.sign_up(http, context, "victim@example.com")
        statuses = []
        for _ in range(12):
            page = http.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token
            statuses.append(
                http.post(
                    "/login",
                    data={
                        "email": "victim@example.com",
                        "password": "guess-pw",
                        "csrf_token": token.group(1),
                    },
                ).status_code
            )
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]
    # Someone else's guessing does not lock the owner out from another address.
    other_client = TestClient(create_app(context), client=("192.0.2.7", 50000))
    page = other_client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    owner = other_client.post(
        "/login",
        data={"email": "victim@example.com", "password": "correct horse 1", "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert owner.status_code == 303


def test_deploys_are_bounded_per_service_and_per_user(client: ApiUser, context: AppContext) -> None:
    from guara.store.models import Deployment

    project_id = client.project()
    service_id = client.service(project_id, image="127.0.0.1:1/acme/api:v1")  # a closed port: fails fast
    with context.db.session() as session:
        busy = Deployment(
            service_id=uuid.UUID(service_id),
            project_id=uuid.UUID(project_id),
            status="resolving",
            image="x",
            platform="linux/amd64",
        )
        session.add(busy)
    refused = client.post(f"/services/{service_id}/deployments")
    assert refused.status_code == 409
    assert refused.json()["code"] == "deploy_in_progress"
    with context.db.session() as session:
        session.merge(busy).status = "failed"
    statuses = []
    for _ in range(10):
        started = client.post(f"/services/{service_id}/deployments")
        statuses.append(started.status_code)
        if started.status_code == 202:
            assert settled_deployment(client.get, service_id, started.json()["id"])["code"] == "invalid_url"
    assert statuses == [202] * 9 + [429]  # the refused one above counted too: 10 a minute per user


def test_deploying_unverified_credentials_counts_as_a_preflight(client: ApiUser) -> None:
    project_id = client.project()
    service_id = client.service(project_id, image="127.0.0.1:1/acme/api:v1")
    saved = client.put(
        f"/services/{service_id}/registry-credentials",
        json={"registry": "127.0.0.1:1", "username": "u", "password": "guess-1", "skip_verification": True},
    )
    assert saved.status_code == 200
    for _ in range(5):
        assert client.post("/registry/test", json={"image": "127.0.0.1:1/acme/api:v1"}).status_code == 200
    refused = client.post(f"/services/{service_id}/deployments")
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
