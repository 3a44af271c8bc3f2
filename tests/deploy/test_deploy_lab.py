"""Deploying services through the API against the registry lab: credentials, anonymous pulls, rotated
and removed credentials, multi-platform indexes, a hanging registry, shutdown, and other users."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from guara.context import AppContext
from guara.core.deploy_runner import DeploymentRunner
from guara.store.models import Deployment
from tests.conftest import build_context
from tests.deploy.conftest import credentials, deploy, wait_for
from tests.deploy.fakes import hanging_registry
from tests.lab import ALICE_PASSWORD, Lab
from tests.lab.fixtures import HttpsServerFactory
from tests.socket_audit import SocketAudit
from tests.support import ApiUser, make_client

pytestmark = pytest.mark.lab

PUBLIC_FIELDS = {
    "id",
    "service_id",
    "status",
    "image",
    "platform",
    "digest",
    "code",
    "message",
    "with_credentials",
    "manifests",
    "url",
    "started_at",
    "created_at",
    "updated_at",
}


@pytest.fixture(autouse=True)
def _every_registry_socket_guarded(lab: Lab, socket_audit: SocketAudit) -> Iterator[None]:
    # `lab` first: its start-up (readiness probes, pushes) happens before the audit starts.
    yield
    socket_audit.assert_all_guarded()


def _service(client: ApiUser, project_id: str, lab: Lab, image: str, name: str = "api", **creds: Any) -> str:
    body: dict[str, Any] = {"name": name, "image": lab.token.ref(image)}
    if creds:
        body["registry_credentials"] = credentials(lab, **creds)
    response = client.post(f"/projects/{project_id}/services", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in manifests}


def _secret_forms(user: str, password: str) -> list[str]:
    raw = password.encode()
    return [
        password,
        base64.b64encode(raw).decode(),
        base64.b64encode(f"{user}:{password}".encode()).decode(),
        json.dumps(password)[1:-1],
    ]


def _audit(client: ApiUser, project_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/projects/{project_id}/audit-logs", params={"limit": 50})
    return [e for e in response.json()["entries"] if e["action"] == "service.deploy"]


def test_private_image_deploys_with_the_stored_credentials(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = _service(lab_client, project_id, lab, "acme/api:v1", user="alice")
    started = lab_client.post(f"/services/{service_id}/deployments")
    assert started.status_code == 202, started.text
    assert set(started.json()) == PUBLIC_FIELDS
    assert started.json()["status"] == "pending"
    assert started.json()["with_credentials"] is True
    done = wait_for(lab_client, service_id, started.json()["id"])

    assert done["status"] == "succeeded", done["message"]
    assert done["code"] is None
    assert done["digest"] == lab.token.images["acme/api:v1"]
    assert done["image"] == lab.token.ref("acme/api:v1")
    assert done["platform"] == "linux/amd64"
    assert done["with_credentials"] is True
    assert "rendered only" in done["message"]
    objects = _by_kind(done["manifests"])
    assert [m["kind"] for m in done["manifests"]] == ["Namespace", "NetworkPolicy", "Secret", "Deployment"]
    namespace = f"guara-{uuid.UUID(project_id).hex[:12]}"
    assert objects["Namespace"]["metadata"]["name"] == namespace
    secret = objects["Secret"]
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"] == {
        "name": "api-registry",
        "namespace": namespace,
        "labels": secret["metadata"]["labels"],
        "annotations": {"guara.dev/redacted": "data"},
    }
    assert secret["data"] == {".dockerconfigjson": "[REDACTED]"}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"{lab.token.host}/acme/api@{done['digest']}"
    assert pod["imagePullSecrets"] == [{"name": "api-registry"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
    assert objects["Deployment"]["metadata"]["namespace"] == namespace
    assert objects["Deployment"]["metadata"]["name"] == "api"

    listed = lab_client.get(f"/services/{service_id}/deployments")
    for form in _secret_forms("alice", ALICE_PASSWORD):
        assert form not in listed.text
    [entry] = _audit(lab_client, project_id)
    assert entry["details"] == {
        "deployment_id": done["id"],
        "status": "succeeded",
        "digest": done["digest"],
        "with_credentials": True,
        "code": None,
        "image": lab.token.ref("acme/api:v1"),
        "platform": "linux/amd64",
    }
    assert entry["target_id"] == service_id


def test_public_image_deploys_anonymously_without_a_pull_secret(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = _service(lab_client, project_id, lab, "public/hello:latest", name="hello")
    done = deploy(lab_client, service_id)
    assert done["status"] == "succeeded", done["message"]
    assert done["with_credentials"] is False
    assert done["digest"] == lab.token.images["public/hello:latest"]
    assert "anonymously" in done["message"]
    assert [m["kind"] for m in done["manifests"]] == ["Namespace", "NetworkPolicy", "Deployment"]
    pod = _by_kind(done["manifests"])["Deployment"]["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in pod
    assert pod["containers"][0]["image"] == f"{lab.token.host}/public/hello@{done['digest']}"


def test_removed_credentials_fail_the_next_deploy_with_a_way_out(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = _service(lab_client, project_id, lab, "acme/api:v1", user="alice")
    assert deploy(lab_client, service_id)["status"] == "succeeded"
    assert lab_client.delete(f"/services/{service_id}/registry-credentials").json()["removed"] is True

    failed = deploy(lab_client, service_id)
    assert failed["status"] == "failed"
    assert failed["code"] in ("auth_failed", "manifest_not_found")
    assert failed["with_credentials"] is False
    assert failed["digest"] is None and failed["manifests"] is None
    assert "add the credentials back" in failed["message"]
    assert "Settings" in failed["message"]
    latest = _audit(lab_client, project_id)[0]["details"]
    assert latest["status"] == "failed" and latest["code"] == failed["code"]
    assert latest["with_credentials"] is False


def test_private_image_without_credentials_fails(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = _service(lab_client, project_id, lab, "acme/api:v1")
    failed = deploy(lab_client, service_id)
    assert failed["code"] == "auth_failed", failed["message"]
    assert "add the credentials back" in failed["message"]


def test_rotated_credentials_are_used_by_the_next_deploy(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = _service(lab_client, project_id, lab, "acme/api:v1", user="alice")
    lab.issuer.reset_requests()
    first = deploy(lab_client, service_id)
    assert first["status"] == "succeeded"
    assert {r.username for r in lab.issuer.requests} == {"alice"}

    changed = lab_client.put(f"/services/{service_id}/registry-credentials", json=credentials(lab, "admin"))
    assert changed.status_code == 200, changed.text
    lab.issuer.reset_requests()
    second = deploy(lab_client, service_id)
    assert second["status"] == "succeeded", second["message"]
    assert second["digest"] == first["digest"] == lab.token.images["acme/api:v1"]
    assert {r.username for r in lab.issuer.requests} == {"admin"}
    assert all(r.status == 200 for r in lab.issuer.requests)
    listed = lab_client.get(f"/services/{service_id}/deployments").json()
    assert [d["id"] for d in listed] == [second["id"], first["id"]]

    # Wrong stored credentials (saved without verifying): the deploy says to fix them in Settings.
    lab_client.put(
        f"/services/{service_id}/registry-credentials",
        json={**credentials(lab), "password": "not-it", "skip_verification": True},
    )
    rejected = deploy(lab_client, service_id)
    assert rejected["code"] == "auth_failed"
    assert rejected["with_credentials"] is True
    assert "Settings" in rejected["message"] and "not-it" not in json.dumps(rejected)


def _set_platform(client: ApiUser, service_id: str, value: str) -> None:
    response = client.request("PATCH", f"/services/{service_id}", json={"platform": value})
    assert response.status_code == 200, response.text
    assert response.json()["platform"] == value


def test_multi_platform_index_pins_the_platform_manifest(
    lab_client: ApiUser, lab: Lab, lab_context: AppContext
) -> None:
    project_id = lab_client.project()
    service_id = _service(lab_client, project_id, lab, "acme/multi:v1", name="multi", user="alice")
    children = lab.token.platforms["acme/multi:v1"]

    amd64 = deploy(lab_client, service_id)
    assert amd64["status"] == "succeeded", amd64["message"]
    assert amd64["digest"] == children["linux/amd64"]
    annotations = _by_kind(amd64["manifests"])["Deployment"]["metadata"]["annotations"]
    assert annotations["guara.dev/index-digest"] == lab.token.images["acme/multi:v1"]
    assert lab.token.images["acme/multi:v1"] in amd64["message"]

    _set_platform(lab_client, service_id, "linux/arm64")
    arm64 = deploy(lab_client, service_id)
    assert arm64["status"] == "succeeded", arm64["message"]
    assert arm64["platform"] == "linux/arm64"
    assert arm64["digest"] == children["linux/arm64"]
    pod = _by_kind(arm64["manifests"])["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"].endswith(f"/acme/multi@{children['linux/arm64']}")
    assert pod["nodeSelector"]["kubernetes.io/arch"] == "arm64"

    _set_platform(lab_client, service_id, "linux/s390x")
    missing = deploy(lab_client, service_id)
    assert missing["code"] == "manifest_not_found"
    assert "linux/amd64, linux/arm64" in missing["message"]

    # A single-platform image built for amd64 does not run on an arm64 service.
    api_service = _service(lab_client, project_id, lab, "acme/api:v1", name="api", user="alice")
    _set_platform(lab_client, api_service, "linux/arm64")
    mismatch = deploy(lab_client, api_service)
    assert mismatch["code"] == "manifest_not_found"
    assert "built for linux/amd64" in mismatch["message"]

    refused = lab_client.request("PATCH", f"/services/{api_service}", json={"platform": "not a platform"})
    assert refused.status_code == 422
    assert refused.json()["code"] == "invalid_platform"


def _elapsed(deployment: dict[str, Any]) -> float:
    created = datetime.fromisoformat(deployment["created_at"])
    updated = datetime.fromisoformat(deployment["updated_at"])
    return (updated - created).total_seconds()


@pytest.mark.slow
def test_a_registry_that_hangs_mid_deploy_times_out_on_the_deadline(
    fast_timeout_client: tuple[ApiUser, AppContext], lab_https_server: HttpsServerFactory
) -> None:
    client, _platform = fast_timeout_client
    release = threading.Event()
    server = lab_https_server(hanging_registry(release))
    try:
        project_id = client.project()
        service_id = client.service(project_id, image=f"{server.host}/acme/slow:v1")
        failed = deploy(client, service_id)
    finally:
        release.set()
    assert failed["status"] == "failed"
    assert failed["code"] == "timeout", failed["message"]
    assert "2 s" in failed["message"]
    # The deadline starts when resolution starts, just after the row was created: never before 2 s.
    # The registry never answers, so only the deadline ends it; the upper bound leaves room for a
    # loaded machine (no race on scheduling) while still far from "waited for the registry".
    assert 2.0 <= _elapsed(failed) < 8.0


def test_shutdown_interrupts_a_running_deployment(
    lab_env: dict[str, str], lab_https_server: HttpsServerFactory
) -> None:
    release = threading.Event()
    server = lab_https_server(hanging_registry(release))
    context = build_context(lab_env)
    context.deployments = DeploymentRunner(shutdown_grace_s=0.2)
    try:
        with make_client(context) as http:
            client = ApiUser.sign_up(http, context, "owner@example.com")
            project_id = client.project()
            service_id = client.service(project_id, image=f"{server.host}/acme/slow:v1")
            started = client.post(f"/services/{service_id}/deployments")
            assert started.status_code == 202
        # Leaving the client ran the app's shutdown: the runner waited 0.2 s, then cancelled.
        assert not context.deployments.busy
        with context.db.session() as session:
            row = session.get(Deployment, uuid.UUID(started.json()["id"]))
            assert row is not None
            assert row.status == "failed" and row.code == "interrupted"
            assert "deploy again" in row.message
    finally:
        release.set()
        context.db.dispose()


def test_deployments_of_other_users_are_not_found(
    lab_client: ApiUser, lab: Lab, lab_context: AppContext
) -> None:
    project_id = lab_client.project()
    service_id = _service(lab_client, project_id, lab, "public/hello:latest", name="hello")
    other_service = _service(lab_client, project_id, lab, "public/hello:latest", name="other")
    done = deploy(lab_client, service_id)
    stranger = ApiUser.sign_up(lab_client.http, lab_context, "stranger@example.com")
    for response in (
        stranger.get(f"/services/{service_id}/deployments"),
        stranger.get(f"/services/{service_id}/deployments/{done['id']}"),
        stranger.post(f"/services/{service_id}/deployments"),
        # The owner asking for a deployment under another of their services.
        lab_client.get(f"/services/{other_service}/deployments/{done['id']}"),
        lab_client.get(f"/services/{service_id}/deployments/{uuid.uuid4()}"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"
    assert len(lab_client.get(f"/services/{service_id}/deployments").json()) == 1


def test_one_deployment_at_a_time_per_service(lab_client: ApiUser, lab: Lab) -> None:
    project_id = lab_client.project()
    service_id = _service(lab_client, project_id, lab, "acme/api:v1", user="alice")
    ids = []
    for _ in range(3):
        started = lab_client.post(f"/services/{service_id}/deployments")
        assert started.status_code == 202  # (a second one while this runs is a 409: test_hardening.py)
        ids.append(started.json()["id"])
        assert wait_for(lab_client, service_id, ids[-1])["status"] == "succeeded"
    listed = lab_client.get(f"/services/{service_id}/deployments", params={"limit": 2}).json()
    assert [d["id"] for d in listed] == ids[::-1][:2]
    assert lab_client.get(f"/services/{service_id}/deployments", params={"limit": 0}).status_code == 422
