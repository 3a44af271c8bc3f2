"""A service's deploy settings: port and health path at create and by PATCH, a new image (only on the
registry of the stored credentials), fields left out kept, every change audited."""

from __future__ import annotations

from tests.support import ApiUser


def test_port_and_health_path_at_create_and_by_patch(client: ApiUser) -> None:
    project_id = client.project()
    created = client.post(
        f"/projects/{project_id}/services",
        json={"name": "api", "image": "ghcr.io/acme/api:v1", "port": 9000, "health_path": "/healthz"},
    )
    assert created.status_code == 201, created.text
    service = created.json()
    assert (service["port"], service["health_path"], service["url"]) == (9000, "/healthz", None)

    patched = client.request("PATCH", f"/services/{service['id']}", json={"port": 3000})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["port"], patched.json()["health_path"]) == (3000, "/healthz")
    cleared = client.request("PATCH", f"/services/{service['id']}", json={"health_path": None})
    assert (cleared.json()["port"], cleared.json()["health_path"]) == (3000, None)

    entries = client.get(f"/projects/{project_id}/audit-logs").json()["entries"]
    settings = [e["details"]["settings"] for e in entries if "settings" in e["details"]]
    assert settings == [
        {"health_path": {"from": "/healthz", "to": None}},
        {"port": {"from": "9000", "to": "3000"}},
    ]


def test_bad_ports_and_paths_are_refused_with_their_own_codes(client: ApiUser) -> None:
    project_id = client.project()
    service_id = client.service(project_id)
    for body, code in [
        ({"port": 0}, "invalid_port"),
        ({"port": 65536}, "invalid_port"),
        ({"health_path": "healthz"}, "invalid_health_path"),
        ({"health_path": "/a b"}, "invalid_health_path"),
        ({"image": "Not/Valid"}, "invalid_image"),
    ]:
        answer = client.request("PATCH", f"/services/{service_id}", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["code"] == code
    created = client.post(f"/projects/{project_id}/services", json={"name": "w", "image": "x", "port": 70000})
    assert created.status_code == 422 and created.json()["code"] == "invalid_port"


def test_a_new_image_stays_on_the_registry_of_the_stored_credentials(client: ApiUser) -> None:
    project_id = client.project()
    created = client.post(
        f"/projects/{project_id}/services",
        json={
            "name": "api",
            "image": "ghcr.io/acme/api:v1",
            "registry_credentials": {"registry": "ghcr.io", "username": "u", "password": "p"},
            "skip_verification": True,
        },
    )
    service_id = created.json()["id"]
    moved = client.request("PATCH", f"/services/{service_id}", json={"image": "quay.io/acme/api:v1"})
    assert moved.status_code == 422 and moved.json()["code"] == "registry_mismatch"
    assert "ghcr.io" in moved.json()["message"]
    retagged = client.request("PATCH", f"/services/{service_id}", json={"image": "ghcr.io/acme/api:v2"})
    assert retagged.status_code == 200 and retagged.json()["image"] == "ghcr.io/acme/api:v2"
    assert client.delete(f"/services/{service_id}/registry-credentials").status_code == 200
    anywhere = client.request("PATCH", f"/services/{service_id}", json={"image": "quay.io/acme/api:v1"})
    assert anywhere.status_code == 200 and anywhere.json()["image"] == "quay.io/acme/api:v1"
