"""A stored password is only ever sent to the registry it was saved for.

Test Connection with `service_id` and a "leave as-is" save both reuse the stored password: neither may
aim it at another host, nor downgrade it to plain HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.lab import Lab, LabServer
from tests.support import ApiUser

pytestmark = pytest.mark.lab


def _recording_registry(seen: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="evil"')
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@pytest.fixture
def evil(lab_https_server: Callable[..., LabServer]) -> tuple[LabServer, list[str]]:
    seen: list[str] = []
    return lab_https_server(_recording_registry(seen)), seen


def _service_with_stored_password(client: ApiUser, lab: Lab) -> str:
    project_id = client.project()
    service_id = client.service(project_id, image=lab.token.ref("acme/api:v1"))
    saved = client.put(
        f"/services/{service_id}/registry-credentials",
        json={
            "registry": lab.token.host,
            "username": "alice",
            "password": lab.token.users["alice"],
            "skip_verification": True,
        },
    )
    assert saved.status_code == 200, saved.text
    return service_id


def test_test_connection_never_sends_a_stored_password_elsewhere(
    lab_client: ApiUser, lab: Lab, evil: tuple[LabServer, list[str]]
) -> None:
    server, seen = evil
    service_id = _service_with_stored_password(lab_client, lab)
    response = lab_client.post(
        "/registry/test",
        json={"image": f"{server.host}/acme/api:v1", "registry": server.host, "service_id": service_id},
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "registry_mismatch"
    assert "type the password" in response.json()["message"]
    assert seen == []


def test_dashboard_test_connection_never_sends_a_stored_password_elsewhere(
    lab_client: ApiUser, lab: Lab, evil: tuple[LabServer, list[str]]
) -> None:
    server, seen = evil
    service_id = _service_with_stored_password(lab_client, lab)
    response = lab_client.http.post(
        "/-/test-connection",
        headers=lab_client.headers,
        json={"image": f"{server.host}/acme/api:v1", "registry": server.host, "service_id": service_id},
    )
    assert response.status_code == 422
    assert seen == []


def test_a_new_password_may_be_tested_anywhere_the_guard_allows(
    lab_client: ApiUser, lab: Lab, evil: tuple[LabServer, list[str]]
) -> None:
    server, seen = evil
    service_id = _service_with_stored_password(lab_client, lab)
    response = lab_client.post(
        "/registry/test",
        json={
            "image": f"{server.host}/acme/api:v1",
            "username": "u",
            "password": "typed-now",
            "service_id": service_id,
        },
    )
    assert response.json()["code"] == "auth_failed"
    assert len(seen) == 2 and seen[1].startswith("Basic ")


def test_keeping_the_stored_password_needs_the_same_registry(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = lab_client.service(project_id, name="hub", image="docker.io/acme/api:v1")
    first = lab_client.put(
        f"/services/{service_id}/registry-credentials",
        json={"registry": "docker.io", "username": "u", "password": "p", "skip_verification": True},
    )
    assert first.status_code == 200
    alias = lab_client.put(
        f"/services/{service_id}/registry-credentials",
        json={"registry": "index.docker.io", "username": "u2", "skip_verification": True},
    )
    assert alias.status_code == 200, alias.text  # the same registry under another name


def test_keeping_the_stored_password_never_downgrades_to_http(lab_env: dict[str, str], lab: Lab) -> None:
    from tests.conftest import build_context
    from tests.support import make_client

    context = build_context({**lab_env, "GUARA_ALLOW_HTTP_REGISTRIES": "true"})
    with make_client(context) as http:
        client = ApiUser.sign_up(http, context, "owner@example.com")
        service_id = _service_with_stored_password(client, lab)
        downgrade = client.put(
            f"/services/{service_id}/registry-credentials",
            json={"registry": f"http://{lab.token.host}", "username": "alice", "skip_verification": True},
        )
        assert downgrade.status_code == 422
        assert downgrade.json()["code"] == "registry_mismatch"
        assert (
            client.get(f"/services/{service_id}").json()["registry_credentials"]["registry"] == lab.token.host
        )
    context.db.dispose()
