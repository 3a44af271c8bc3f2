"""Hostile host names in user input end as a clear 4xx or a failed preflight, never a 500.

Every host here is refused before any lookup or connection (the numeric ones are not dotted quads,
the ``xn--`` ones are not IDNA), so nothing leaves the machine.
"""

from __future__ import annotations

import pytest

from tests.support import ApiUser

HOSTILE_HOSTS = [
    "0177.0.0.1",
    "127.000.000.001",
    "999.1.1.1",
    "256.256.256.256",
    "1.2.3.04",
    "xn--zz.example",
    "xn--bcher-kva.ab--c",
]


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_test_connection_on_a_hostile_image_host_is_a_422(client: ApiUser, host: str) -> None:
    response = client.post("/registry/test", json={"image": f"{host}/x:y"})
    # The API validates the image before the preflight: the same refusal as a malformed reference.
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_image"
    assert host in body["message"]


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_test_connection_on_a_hostile_registry_url_is_a_422(client: ApiUser, host: str) -> None:
    response = client.post(
        "/registry/test", json={"image": "ghcr.io/acme/api:v1", "registry": f"https://{host}"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_registry"


@pytest.mark.parametrize("host", HOSTILE_HOSTS[:2])
def test_creating_a_service_on_a_hostile_host_is_a_422(client: ApiUser, host: str) -> None:
    project_id = client.project()
    response = client.post(
        f"/projects/{project_id}/services",
        json={
            "name": "api",
            "image": f"{host}/x:y",
            "registry_credentials": {"registry": host, "username": "u", "password": "p"},
        },
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_image"
