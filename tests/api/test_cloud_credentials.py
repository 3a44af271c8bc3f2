"""Cloud registry credentials (aws_ecr, google) through the API: keys → moto / the lab's Google token
server → the lab's registries, at Test Connection, verified save and deploy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from guara.context import AppContext
from guara.store.models import RegistryCredential
from tests.conftest import build_context
from tests.lab import Lab
from tests.lab.cloud import ECR_TOKEN_PASSWORD, GOOGLE_ACCESS_TOKEN, GoogleTokenServer, MotoAws
from tests.support import ApiUser, make_client, settled_deployment

pytestmark = pytest.mark.lab

REGION = "eu-west-1"


@pytest.fixture
def cloud_context(lab_env: dict[str, str], moto_aws: MotoAws) -> Iterator[AppContext]:
    context = build_context({**lab_env, "GUARA_AWS_ENDPOINT_URL": moto_aws.url})
    yield context
    context.db.dispose()


@pytest.fixture
def cloud_client(cloud_context: AppContext) -> Iterator[ApiUser]:
    with make_client(cloud_context) as http:
        yield ApiUser.sign_up(http, cloud_context, "owner@example.com")


def aws_creds(lab: Lab, moto_aws: MotoAws, **extra: Any) -> dict[str, Any]:
    return {
        "registry": lab.basic.host,
        "kind": "aws_ecr",
        "aws_access_key_id": moto_aws.puller.access_key_id,
        "aws_secret_access_key": moto_aws.puller.secret_access_key,
        "aws_region": REGION,
        **extra,
    }


def google_creds(lab: Lab, server: GoogleTokenServer, **extra: Any) -> dict[str, Any]:
    return {"registry": lab.token.host, "kind": "google", "google_json_key": server.json_key(), **extra}


def create(
    client: ApiUser, project_id: str, image: str, creds: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    response = client.post(
        f"/projects/{project_id}/services",
        json={"name": "api", "image": image, "registry_credentials": creds, **extra},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_aws_ecr_credentials_verified_saved_masked_and_deployed(
    cloud_client: ApiUser, cloud_context: AppContext, lab: Lab, moto_aws: MotoAws
) -> None:
    project_id = cloud_client.project()
    service = create(cloud_client, project_id, lab.basic.ref("acme/api:v1"), aws_creds(lab, moto_aws))
    creds = service["registry_credentials"]
    key_id = moto_aws.puller.access_key_id
    assert creds["kind"] == "aws_ecr"
    assert creds["aws_access_key_id_masked"] == key_id[:4] + "••••" + key_id[-4:]
    assert creds["aws_region"] == REGION
    assert creds["username_masked"] is None
    assert creds["has_password"] is True
    assert creds["verification"] == "passed"
    with cloud_context.db.session() as session:
        row = session.scalars(select(RegistryCredential)).one()
        assert row.kind == "aws_ecr"
        assert row.username == key_id
        assert moto_aws.puller.secret_access_key not in row.password_sealed
    deployment = cloud_client.post(f"/services/{service['id']}/deployments")
    assert deployment.status_code == 202, deployment.text
    done = settled_deployment(cloud_client.get, service["id"], deployment.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["with_credentials"] is True
    assert done["digest"] == lab.basic.images["acme/api:v1"]
    for text in (moto_aws.puller.secret_access_key, ECR_TOKEN_PASSWORD):
        assert text not in str(done)


def test_aws_ecr_with_a_role(cloud_client: ApiUser, lab: Lab, moto_aws: MotoAws) -> None:
    project_id = cloud_client.project()
    creds = aws_creds(lab, moto_aws, aws_role_arn=moto_aws.role_arn)
    service = create(cloud_client, project_id, lab.basic.ref("acme/api:v1"), creds)
    assert service["registry_credentials"]["aws_role_arn"] == moto_aws.role_arn


def test_wrong_aws_secret_fails_the_verified_save_with_auth_failed(
    cloud_client: ApiUser, lab: Lab, moto_aws: MotoAws
) -> None:
    project_id = cloud_client.project()
    response = cloud_client.post(
        f"/projects/{project_id}/services",
        json={
            "name": "api",
            "image": lab.basic.ref("acme/api:v1"),
            "registry_credentials": aws_creds(lab, moto_aws, aws_secret_access_key="wrong-secret-key"),
        },
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "auth_failed"
    assert "AWS rejected the access key" in response.json()["message"]
    assert "wrong-secret-key" not in response.text


def test_test_connection_with_cloud_keys(
    cloud_client: ApiUser, lab: Lab, moto_aws: MotoAws, google_token_server: GoogleTokenServer
) -> None:
    aws = {"image": lab.basic.ref("acme/api:v1"), **aws_creds(lab, moto_aws)}
    passed = cloud_client.post("/registry/test", json=aws)
    assert passed.status_code == 200, passed.text
    assert passed.json()["ok"] is True
    denied = cloud_client.post(
        "/registry/test", json={**aws, "aws_access_key_id": moto_aws.nobody.access_key_id}
    )
    assert denied.json()["code"] == "auth_failed"
    google = {"image": lab.token.ref("acme/api:v1"), **google_creds(lab, google_token_server)}
    passed = cloud_client.post("/registry/test", json=google)
    assert passed.json()["ok"] is True, passed.text
    assert GOOGLE_ACCESS_TOKEN not in passed.text


def test_google_credentials_kept_when_a_put_omits_the_key(
    cloud_client: ApiUser, cloud_context: AppContext, lab: Lab, google_token_server: GoogleTokenServer
) -> None:
    project_id = cloud_client.project()
    key_text = google_token_server.json_key()
    service = create(
        cloud_client, project_id, lab.token.ref("acme/api:v1"), google_creds(lab, google_token_server)
    )
    creds = service["registry_credentials"]
    assert creds["kind"] == "google"
    assert creds["google_client_email"] == google_token_server.client_email
    assert "PRIVATE" not in str(service)
    kept = cloud_client.put(
        f"/services/{service['id']}/registry-credentials", json={"registry": lab.token.host, "kind": "google"}
    )
    assert kept.status_code == 200, kept.text
    assert kept.json()["verification"] == "passed"
    tested = cloud_client.post(
        "/registry/test", json={"image": lab.token.ref("acme/api:v1"), "service_id": service["id"]}
    )
    assert tested.json()["ok"] is True, tested.text
    with cloud_context.db.session() as session:
        row = session.get(RegistryCredential, uuid.UUID(service["id"]))
        assert row is not None
        assert row.kind == "google"
        assert key_text not in row.password_sealed


def test_aws_put_keeps_the_secret_and_changes_the_region(
    cloud_client: ApiUser, lab: Lab, moto_aws: MotoAws
) -> None:
    project_id = cloud_client.project()
    service = create(cloud_client, project_id, lab.basic.ref("acme/api:v1"), aws_creds(lab, moto_aws))
    url = f"/services/{service['id']}/registry-credentials"
    changed = cloud_client.put(
        url, json={"registry": lab.basic.host, "kind": "aws_ecr", "aws_region": "us-east-1"}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["aws_region"] == "us-east-1"
    new_id = cloud_client.put(
        url,
        json={
            "registry": lab.basic.host,
            "kind": "aws_ecr",
            "aws_access_key_id": moto_aws.nobody.access_key_id,
        },
    )
    assert new_id.status_code == 422
    assert new_id.json()["field"] == "aws_secret_access_key"
    to_password = cloud_client.put(url, json={"registry": lab.basic.host, "username": "alice"})
    assert to_password.status_code == 422
    assert to_password.json()["field"] == "password"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {
                "kind": "google",
                "google_json_key": '{"type": "service_account", "private_key": "-----BEGIN\n"}',
            },
            None,
        ),
        ({"kind": "google"}, "google_json_key"),
        ({"kind": "aws_ecr", "aws_secret_access_key": "s"}, "aws_access_key_id"),
        ({"kind": "aws_ecr", "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE"}, "aws_secret_access_key"),
        (
            {"kind": "aws_ecr", "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": "s"},
            "aws_region",
        ),
        ({"kind": "password", "username": "u", "password": "p", "aws_region": "eu-west-1"}, "aws_region"),
        ({"kind": "aws_ecr", "username": "u"}, "username"),
    ],
)
def test_invalid_cloud_input_is_invalid_input(
    cloud_client: ApiUser, lab: Lab, body: dict[str, Any], field: str | None
) -> None:
    response = cloud_client.post(
        "/registry/test", json={"image": lab.basic.ref("acme/api:v1"), "registry": lab.basic.host, **body}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_input"
    if field is not None:
        assert response.json()["field"] == field


def test_mangled_google_key_is_a_clear_invalid_input(
    cloud_client: ApiUser, lab: Lab, google_token_server: GoogleTokenServer
) -> None:
    mangled = google_token_server.json_key().replace("\\n", "\n")
    response = cloud_client.post(
        "/registry/test",
        json={
            "image": lab.token.ref("acme/api:v1"),
            "registry": lab.token.host,
            "kind": "google",
            "google_json_key": mangled,
        },
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"
    assert response.json()["field"] == "google_json_key"
    assert "line breaks" in response.json()["message"]
    assert "PRIVATE KEY" not in response.text
