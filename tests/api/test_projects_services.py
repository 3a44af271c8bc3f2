"""Projects and services through the JSON API, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from guara.context import AppContext
from tests.support import ApiUser


def test_create_list_get_project(client: ApiUser) -> None:
    created = client.post("/projects", json={"name": "  Shop  "})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "Shop"
    assert body["role"] == "owner"
    assert client.get(f"/projects/{body['id']}").json()["name"] == "Shop"
    assert [p["id"] for p in client.get("/projects").json()] == [body["id"]]


def test_create_and_read_service(client: ApiUser) -> None:
    project_id = client.project()
    response = client.post(f"/projects/{project_id}/services", json={"name": "web", "image": "busybox"})
    assert response.status_code == 201, response.text
    service = response.json()
    assert service["image"] == "docker.io/library/busybox:latest"
    assert service["build_method"] == "docker_image"
    assert service["registry_credentials"] is None
    assert client.get(f"/services/{service['id']}").json()["name"] == "web"
    assert [s["name"] for s in client.get(f"/projects/{project_id}/services").json()] == ["web"]


def test_service_create_is_audited(client: ApiUser) -> None:
    project_id = client.project()
    service_id = client.service(project_id)
    entries = client.get(f"/projects/{project_id}/audit-logs").json()["entries"]
    assert [(e["action"], e["target_id"]) for e in entries] == [("service.create", service_id)]
    assert entries[0]["actor_email"] == client.email


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"name": "", "image": "busybox"}, "invalid_name"),
        ({"name": "x" * 5000, "image": "busybox"}, "invalid_name"),
        ({"name": "Web_App", "image": "busybox"}, "invalid_name"),
        ({"name": "api\n", "image": "busybox"}, "invalid_name"),
        ({"name": "web", "image": "docker/Docker"}, "invalid_image"),
        ({"name": "web", "image": "https://github.com/docker/docker"}, "invalid_image"),
        ({"name": "web", "image": ""}, "invalid_image"),
        ({"name": 5, "image": "busybox"}, "invalid_input"),
        ({"name": "web"}, "invalid_input"),
        ({"name": "web", "image": "busybox", "extra": 1}, "invalid_input"),
    ],
)
def test_bad_service_input_is_a_clear_4xx_and_writes_nothing(
    client: ApiUser, payload: dict[str, object], code: str
) -> None:
    project_id = client.project()
    response = client.post(f"/projects/{project_id}/services", json=payload)
    assert response.status_code == 422
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert client.get(f"/projects/{project_id}/services").json() == []
    assert client.get(f"/projects/{project_id}/audit-logs").json()["entries"] == []


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "x" * 5000])
def test_bad_project_names(client: ApiUser, name: str) -> None:
    response = client.post("/projects", json={"name": name})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"
    assert client.get("/projects").json() == []


def test_malformed_json_is_a_clear_422(client: ApiUser) -> None:
    response = client.post("/projects", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_json"


def test_duplicate_service_name_conflicts(client: ApiUser) -> None:
    project_id = client.project()
    client.service(project_id, "api")
    response = client.post(f"/projects/{project_id}/services", json={"name": "api", "image": "busybox"})
    assert response.status_code == 409
    assert response.json()["code"] == "name_taken"


def test_unknown_ids_are_404(client: ApiUser) -> None:
    missing = uuid.uuid4()
    assert client.get(f"/projects/{missing}").json()["code"] == "not_found"
    assert client.get(f"/services/{missing}").status_code == 404
    assert client.get("/projects/not-a-uuid").status_code == 422


def test_no_token_is_401_and_bad_token_is_401(client: ApiUser) -> None:
    assert client.http.get("/api/v1/projects").status_code == 401
    response = client.http.get("/api/v1/projects", headers={"Authorization": "Bearer gua_nope"})
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_two_users_cannot_see_each_others_anything(client: ApiUser, context: AppContext) -> None:
    project_id = client.project("mine")
    service_id = client.service(project_id)
    other = ApiUser.sign_up(client.http, context, "other@example.com")
    assert other.get("/projects").json() == []
    for path in (
        f"/projects/{project_id}",
        f"/projects/{project_id}/services",
        f"/services/{service_id}",
        f"/projects/{project_id}/audit-logs",
    ):
        response = other.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"
        assert "mine" not in response.text
    create = other.post(f"/projects/{project_id}/services", json={"name": "evil", "image": "busybox"})
    assert create.status_code == 404
    put = other.put(
        f"/services/{service_id}/registry-credentials",
        json={"registry": "ghcr.io", "username": "u", "password": "p", "skip_verification": True},
    )
    assert put.status_code == 404
    assert other.delete(f"/services/{service_id}/registry-credentials").status_code == 404
    assert [s["name"] for s in client.get(f"/projects/{project_id}/services").json()] == ["api"]


def test_request_body_size_is_limited(client: ApiUser) -> None:
    response = client.post(
        "/projects", content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_health_and_readiness(client: ApiUser) -> None:
    assert client.http.get("/healthz").json() == {"status": "ok"}
    assert client.http.get("/readyz").status_code == 200


def test_openapi_is_served(client: ApiUser) -> None:
    spec = client.http.get("/api/v1/openapi.json").json()
    assert "/api/v1/projects/{project_id}/services" in spec["paths"]
    assert "/api/v1/registry/test" in spec["paths"]


def test_service_platform_is_chosen_at_create_and_changed_later(client: ApiUser, context: AppContext) -> None:
    project_id = client.project()
    created = client.post(
        f"/projects/{project_id}/services",
        json={"name": "arm", "image": "busybox", "platform": "linux/aarch64"},
    )
    assert created.status_code == 201, created.text
    service_id = created.json()["id"]
    assert created.json()["platform"] == "linux/arm64"
    bad = client.post(
        f"/projects/{project_id}/services", json={"name": "x", "image": "busybox", "platform": "arm"}
    )
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_platform"
    changed = client.request("PATCH", f"/services/{service_id}", json={"platform": "linux/amd64"})
    assert changed.json()["platform"] == "linux/amd64"
    [update, _create] = client.get(f"/projects/{project_id}/audit-logs").json()["entries"]
    assert update["details"] == {"platform": "linux/amd64", "previous_platform": "linux/arm64"}
    other = ApiUser.sign_up(client.http, context, "other@example.com")
    assert (
        other.request("PATCH", f"/services/{service_id}", json={"platform": "linux/arm64"}).status_code == 404
    )
    assert client.get(f"/services/{service_id}").json()["platform"] == "linux/amd64"
