"""Private registry credentials through the API, against real registries (the lab)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from guara.context import AppContext
from guara.store.models import RegistryCredential
from tests.lab import Lab
from tests.support import ApiUser, make_client

pytestmark = pytest.mark.lab


def _creds(lab: Lab, user: str = "alice", password: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "registry": lab.token.host,
        "username": user,
        "password": lab.token.users[user] if password is None else password,
        **extra,
    }


def _audit(client: ApiUser, project_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/projects/{project_id}/audit-logs").json()["entries"])


def test_create_service_with_verified_credentials(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    response = lab_client.post(
        f"/projects/{project_id}/services",
        json={"name": "api", "image": lab.token.ref("acme/api:v1"), "registry_credentials": _creds(lab)},
    )
    assert response.status_code == 201, response.text
    creds = response.json()["registry_credentials"]
    assert creds["registry"] == lab.token.host
    assert creds["username_masked"] == "a•••"
    assert creds["has_password"] is True
    assert creds["verification"] == "passed"
    assert creds["verified_at"]
    assert "password" not in response.text.replace("has_password", "").replace('"kind":"password"', "")
    [entry] = _audit(lab_client, project_id)
    assert entry["action"] == "service.create"
    assert entry["details"]["credentials"] == "added"
    assert entry["details"]["preflight"] == "passed"
    assert entry["details"]["registry"] == lab.token.host
    assert "alice" not in str(entry)


def test_failed_verification_stores_nothing(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    response = lab_client.post(
        f"/projects/{project_id}/services",
        json={
            "name": "api",
            "image": lab.token.ref("acme/api:v1"),
            "registry_credentials": _creds(lab, password="wrong"),
        },
    )
    assert response.status_code == 422
    assert response.json()["code"] == "auth_failed"
    assert "Nothing was saved" in response.json()["message"]
    assert lab_client.get(f"/projects/{project_id}/services").json() == []
    assert _audit(lab_client, project_id) == []


def test_save_without_verifying_is_recorded_as_overridden(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    response = lab_client.post(
        f"/projects/{project_id}/services",
        json={
            "name": "api",
            "image": lab.token.ref("acme/api:v1"),
            "registry_credentials": _creds(lab, password="wrong"),
            "skip_verification": True,
        },
    )
    assert response.status_code == 201
    assert response.json()["registry_credentials"]["verification"] == "overridden"
    assert response.json()["registry_credentials"]["verified_at"] is None
    assert _audit(lab_client, project_id)[0]["details"]["preflight"] == "overridden"


def test_update_keeps_omitted_password_and_test_uses_stored_values(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = lab_client.service(project_id, image=lab.token.ref("acme/api:v1"))
    first = lab_client.put(f"/services/{service_id}/registry-credentials", json=_creds(lab))
    assert first.status_code == 200, first.text
    # Leave the password as-is: the stored one is used for the preflight.
    again = lab_client.put(
        f"/services/{service_id}/registry-credentials", json={"registry": lab.token.host, "username": "alice"}
    )
    assert again.status_code == 200, again.text
    tested = lab_client.post(
        "/registry/test",
        json={"image": lab.token.ref("acme/api:v1"), "registry": lab.token.host, "service_id": service_id},
    )
    assert tested.json()["ok"] is True, tested.text
    assert tested.json()["digest"] == lab.token.images["acme/api:v1"]
    details = [e["details"] for e in _audit(lab_client, project_id)]
    assert details[0]["credentials"] == "updated" and details[0]["changed"] == []
    assert details[1]["credentials"] == "added"


def test_new_credentials_need_username_and_password(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = lab_client.service(project_id, image=lab.token.ref("acme/api:v1"))
    response = lab_client.put(
        f"/services/{service_id}/registry-credentials", json={"registry": lab.token.host}
    )
    assert response.status_code == 422


def test_registry_must_match_the_image(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = lab_client.service(project_id, image=lab.token.ref("acme/api:v1"))
    response = lab_client.put(
        f"/services/{service_id}/registry-credentials", json={**_creds(lab), "registry": lab.basic.host}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "registry_mismatch"
    docker = lab_client.service(project_id, name="hub", image="busybox")
    alias = lab_client.put(
        f"/services/{docker}/registry-credentials",
        json={"registry": "index.docker.io", "username": "u", "password": "p", "skip_verification": True},
    )
    assert alias.status_code == 200, alias.text
    assert alias.json()["registry"] == "docker.io"


def test_remove_credentials_falls_back_to_anonymous(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = lab_client.service(project_id, image=lab.token.ref("acme/api:v1"))
    lab_client.put(f"/services/{service_id}/registry-credentials", json=_creds(lab, skip_verification=True))
    removed = lab_client.delete(f"/services/{service_id}/registry-credentials")
    assert removed.status_code == 200
    assert removed.json()["removed"] is True
    assert "anonymous" in removed.json()["message"] and "fail" in removed.json()["message"]
    assert lab_client.get(f"/services/{service_id}").json()["registry_credentials"] is None
    assert _audit(lab_client, project_id)[0]["details"] == {
        "credentials": "removed",
        "registry": lab.token.host,
    }
    assert lab_client.delete(f"/services/{service_id}/registry-credentials").json()["removed"] is False


def test_test_connection_codes(lab_client: ApiUser, lab: Lab) -> None:
    image = lab.token.ref("acme/api:v1")
    ok = lab_client.post("/registry/test", json={"image": image, "registry": lab.token.host, **_creds(lab)})
    assert ok.json()["ok"] is True
    bob = lab_client.post("/registry/test", json={"image": image, **_creds(lab, "bob")})
    assert bob.json()["code"] == "manifest_not_found"
    wrong = lab_client.post("/registry/test", json={"image": image, **_creds(lab, password="nope")})
    assert wrong.json()["code"] == "auth_failed"
    assert "nope" not in wrong.text


def test_rate_limit_counts_tests_and_verified_saves(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = lab_client.service(project_id, image=lab.token.ref("acme/api:v1"))
    body = {"image": lab.token.ref("acme/api:v1"), **_creds(lab)}
    for _ in range(3):
        assert lab_client.post("/registry/test", json=body).status_code == 200
    for _ in range(2):
        assert (
            lab_client.put(f"/services/{service_id}/registry-credentials", json=_creds(lab)).status_code
            == 200
        )
    limited = lab_client.post("/registry/test", json=body)
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    save = lab_client.put(f"/services/{service_id}/registry-credentials", json=_creds(lab))
    assert save.status_code == 429
    # Saving without verifying runs no preflight, so it is not limited.
    skip = lab_client.put(
        f"/services/{service_id}/registry-credentials", json=_creds(lab, skip_verification=True)
    )
    assert skip.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"registry": ""}, 422, "invalid_input"),
        ({"registry": "r" * 300}, 422, "invalid_input"),
        ({"registry": "ghcr.io\r\nX-Evil: 1"}, 422, "invalid_input"),
        ({"username": "ali\r\nce"}, 422, "invalid_input"),
        ({"username": "a:b"}, 422, "invalid_input"),
        ({"password": "pa\x00ss"}, 422, "invalid_input"),
        ({"password": 12}, 422, "invalid_input"),
        ({"username": ["x"]}, 422, "invalid_input"),
        ({"password": "x" * 20000}, 422, "invalid_input"),
    ],
)
def test_bad_credentials_input(
    lab_client: ApiUser, lab: Lab, body: dict[str, Any], status: int, code: str, lab_context: AppContext
) -> None:
    project_id = lab_client.project()
    service_id = lab_client.service(project_id, image=lab.token.ref("acme/api:v1"))
    response = lab_client.put(
        f"/services/{service_id}/registry-credentials",
        json={**_creds(lab), "skip_verification": True, **body},
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    with lab_context.db.session() as session:
        assert session.scalar(select(RegistryCredential)) is None


def test_huge_password_is_refused_before_parsing(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = lab_client.service(project_id, image=lab.token.ref("acme/api:v1"))
    response = lab_client.put(
        f"/services/{service_id}/registry-credentials",
        json={**_creds(lab), "password": "x" * (2 * 1024 * 1024)},
    )
    assert response.status_code == 413


def test_gcr_json_key_sized_password_fits(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = lab_client.service(project_id, image=lab.token.ref("acme/api:v1"))
    response = lab_client.put(
        f"/services/{service_id}/registry-credentials",
        json={
            "registry": lab.token.host,
            "username": "_json_key_base64",
            "password": "k" * 8000,
            "skip_verification": True,
        },
    )
    assert response.status_code == 200, response.text


def test_racing_saves_never_mix(lab_context: AppContext, lab: Lab) -> None:
    with make_client(lab_context) as http:
        owner = ApiUser.sign_up(http, lab_context, "owner@example.com")
        project_id = owner.project()
        service_id = owner.service(project_id, image=lab.token.ref("acme/api:v1"))
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def save(user: str) -> None:
        with make_client(lab_context) as http:
            client = ApiUser(http, owner.email, owner.token)
            barrier.wait()
            statuses.append(
                client.put(f"/services/{service_id}/registry-credentials", json=_creds(lab, user)).status_code
            )

    threads = [threading.Thread(target=save, args=(u,)) for u in ("alice", "admin")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with make_client(lab_context) as http:
        owner = ApiUser(http, owner.email, owner.token)
        updates = [
            e
            for e in owner.get(f"/projects/{project_id}/audit-logs").json()["entries"]
            if e["action"] == "service.update"
        ]
    assert sorted(statuses) in ([200, 200], [200, 409])
    assert len(updates) == statuses.count(200)
    with lab_context.db.session() as session:
        row = session.get(RegistryCredential, uuid.UUID(service_id))
        assert row is not None and row.username in ("alice", "admin")
