"""Applying to Kubernetes with the official client, against a tiny fake API server on loopback.

The fake records each request: the tests check the server-side apply protocol (PATCH,
``application/apply-patch+yaml``, ``fieldManager=guara``, ``force=true``), the order, the paths, and
that the cluster receives the real Secret while the API only ever shows the redacted one.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
from pydantic import SecretStr

from guara.context import AppContext
from guara.core.runtimes import KubernetesRuntime, ServiceRef
from guara.deploy import (
    ApplyFailed,
    KubernetesApplier,
    ObjectRef,
    PullCredentials,
    ResolvedImage,
    namespace_for,
    render_workload,
)
from guara.deploy.platforms import parse_platform
from guara.registry import parse_image_reference, parse_registry
from tests.conftest import build_context
from tests.deploy.conftest import credentials, deploy, wait_for
from tests.deploy.fakes import FakeKubernetes, kubeconfig
from tests.lab import ALICE_PASSWORD, Lab, LabServer, start_https_server
from tests.support import ApiUser, make_client

PASSWORD = "s3cret-pull-token"


@pytest.fixture
def fake_cluster() -> Iterator[tuple[FakeKubernetes, LabServer]]:
    fake = FakeKubernetes()
    server = start_https_server(fake.handler(), tls=False)
    yield fake, server
    server.stop()


def _configuration(server: LabServer) -> kubernetes.client.Configuration:
    configuration = kubernetes.client.Configuration()
    configuration.host = server.url
    configuration.api_key = {"BearerToken": "cluster-token"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return configuration


def _objects() -> tuple[dict[str, Any], ...]:
    image = ResolvedImage(
        reference=parse_image_reference("ghcr.io/acme/web:v1"),
        digest="sha256:" + "a" * 64,
        index_digest=None,
        platform=parse_platform("linux/amd64"),
        config_digest="sha256:" + "c" * 64,
        with_credentials=True,
        elapsed_ms=1,
    )
    rendered = render_workload(
        image,
        project_id=uuid.UUID(int=1),
        service_id=uuid.uuid4(),
        service_name="web",
        deployment_id=uuid.uuid4(),
        credentials=PullCredentials(parse_registry("ghcr.io"), "robot", SecretStr(PASSWORD)),
    )
    return rendered.objects


@pytest.mark.anyio
async def test_server_side_apply_in_order(fake_cluster: tuple[FakeKubernetes, LabServer]) -> None:
    fake, server = fake_cluster
    objects = _objects()
    await KubernetesApplier(_configuration(server)).apply(objects)
    namespace = objects[0]["metadata"]["name"]
    assert [(r.method, r.path) for r in fake.requests] == [
        ("PATCH", f"/api/v1/namespaces/{namespace}"),
        (
            "PATCH",
            f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/guara-project-isolation",
        ),
        ("PATCH", f"/api/v1/namespaces/{namespace}/secrets/web-registry"),
        ("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/web"),
    ]
    for request, obj in zip(fake.requests, objects, strict=True):
        assert request.content_type == "application/apply-patch+yaml"
        assert request.query["fieldManager"] == ["guara"]
        assert request.query["force"] == ["true"]
        assert request.authorization == "Bearer cluster-token"
        assert request.body == obj


@pytest.mark.anyio
async def test_refusals_become_apply_failed_without_quoting_secrets(
    fake_cluster: tuple[FakeKubernetes, LabServer],
) -> None:
    fake, server = fake_cluster
    objects = _objects()
    fake.refuse["/deployments/web"] = (422, 'Deployment.apps "web" is invalid: spec.replicas: bad')
    with pytest.raises(ApplyFailed) as caught:
        await KubernetesApplier(_configuration(server)).apply(objects)
    assert caught.value.kind == "Deployment" and caught.value.status == 422
    assert "spec.replicas: bad" in str(caught.value)

    fake.refuse.clear()
    [secret] = [obj for obj in objects if obj["kind"] == "Secret"]
    data = secret["data"][".dockerconfigjson"]
    fake.refuse["/secrets/web-registry"] = (422, f'Secret "web-registry" is invalid: data: "{data}"')
    with pytest.raises(ApplyFailed) as refused:
        await KubernetesApplier(_configuration(server)).apply(objects)
    assert refused.value.kind == "Secret"
    assert data not in str(refused.value) and PASSWORD not in str(refused.value)
    assert "422" in str(refused.value)


@pytest.mark.anyio
async def test_unreachable_cluster_is_apply_failed(fake_cluster: tuple[FakeKubernetes, LabServer]) -> None:
    _fake, server = fake_cluster
    configuration = _configuration(server)
    server.stop()
    configuration.retries = 0
    with pytest.raises(ApplyFailed, match="could not reach the Kubernetes API"):
        await KubernetesApplier(configuration, request_timeout=2).apply(_objects())


@pytest.mark.anyio
async def test_missing_configuration_is_apply_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ApplyFailed, match="no usable Kubernetes configuration"):
        await KubernetesApplier.from_environment(kubeconfig=tmp_path / "absent").apply(_objects())


@pytest.fixture
def kubernetes_platform(
    lab_env: dict[str, str],
    fake_cluster: tuple[FakeKubernetes, LabServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[AppContext]:
    _fake, server = fake_cluster
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig(server.url))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    context = build_context({**lab_env, "GUARA_RUNTIME": "kubernetes", "GUARA_KUBECONFIG": str(config)})
    runtime = context.deployments.runtime
    assert isinstance(runtime, KubernetesRuntime) and isinstance(runtime.applier, KubernetesApplier)
    yield context
    context.db.dispose()


@pytest.mark.lab
def test_runtime_kubernetes_applies_the_real_secret_and_shows_the_redacted_one(
    kubernetes_platform: AppContext, fake_cluster: tuple[FakeKubernetes, LabServer], lab: Lab
) -> None:
    fake, _server = fake_cluster
    with make_client(kubernetes_platform) as http:
        client = ApiUser.sign_up(http, kubernetes_platform, "owner@example.com")
        project_id = client.project()
        created = client.post(
            f"/projects/{project_id}/services",
            json={
                "name": "api",
                "image": lab.token.ref("acme/api:v1"),
                "registry_credentials": credentials(lab),
            },
        )
        assert created.status_code == 201, created.text
        service_id = created.json()["id"]
        done = deploy(client, service_id)
        assert done["status"] == "succeeded", done["message"]
        assert "applied to Kubernetes namespace" in done["message"]

        assert fake.kinds() == ["Namespace", "NetworkPolicy", "Secret", "Deployment"]
        assert all(r.authorization == "Bearer fake-cluster-token" for r in fake.requests)
        applied_secret = fake.requests[2].body
        config = json.loads(base64.b64decode(applied_secret["data"][".dockerconfigjson"]))
        assert config["auths"][lab.token.host]["username"] == "alice"
        assert config["auths"][lab.token.host]["password"] == ALICE_PASSWORD
        shown = {m["kind"]: m for m in done["manifests"]}
        assert shown["Secret"]["data"] == {".dockerconfigjson": "[REDACTED]"}
        assert fake.requests[3].body == shown["Deployment"]
        image = fake.requests[3].body["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"{lab.token.host}/acme/api@{lab.token.images['acme/api:v1']}"

        fake.refuse["/deployments/api"] = (403, 'deployments.apps "api" is forbidden: quota exceeded')
        refused = deploy(client, service_id)
        assert refused["status"] == "failed"
        assert refused["code"] == "apply_failed"
        assert "quota exceeded" in refused["message"]
        assert refused["digest"] == lab.token.images["acme/api:v1"]
        assert refused["manifests"] is not None

        # Removed credentials do not live on in the cluster: removing them deletes the pull Secret.
        removed = client.delete(f"/services/{service_id}/registry-credentials").json()
        assert removed["removed"] is True
        assert "pull Secret was deleted from the cluster" in removed["message"]
        namespace = shown["Secret"]["metadata"]["namespace"]
        assert fake.deleted() == [f"/api/v1/namespaces/{namespace}/secrets/api-registry"]


@pytest.mark.anyio
async def test_absent_objects_are_deleted_and_missing_ones_are_fine(
    fake_cluster: tuple[FakeKubernetes, LabServer],
) -> None:
    fake, server = fake_cluster
    objects = _objects()
    namespace = objects[0]["metadata"]["name"]
    applier = KubernetesApplier(_configuration(server))
    await applier.apply(objects, absent=[ObjectRef("Secret", namespace, "api-registry")])
    assert fake.deleted() == [f"/api/v1/namespaces/{namespace}/secrets/api-registry"]


@pytest.mark.anyio
async def test_a_deleted_service_takes_its_deployment_and_pull_secret_along(
    fake_cluster: tuple[FakeKubernetes, LabServer],
) -> None:
    fake, server = fake_cluster
    objects = _objects()
    namespace = objects[0]["metadata"]["name"]
    await KubernetesApplier(_configuration(server)).apply(objects)
    runtime = KubernetesRuntime(KubernetesApplier(_configuration(server)))
    project_id = uuid.UUID(int=1)
    assert namespace_for(project_id) == namespace
    note = await runtime.remove_service(ServiceRef(project_id, uuid.uuid4(), "web"))
    assert "Deployment and pull Secret were deleted" in note
    assert fake.deleted() == [
        f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
        f"/api/v1/namespaces/{namespace}/secrets/web-registry",
    ]


@pytest.mark.anyio
async def test_a_deleted_project_takes_its_namespace_along(
    fake_cluster: tuple[FakeKubernetes, LabServer],
) -> None:
    fake, server = fake_cluster
    objects = _objects()
    namespace = objects[0]["metadata"]["name"]
    await KubernetesApplier(_configuration(server)).apply(objects)
    runtime = KubernetesRuntime(KubernetesApplier(_configuration(server)))
    assert namespace in await runtime.remove_project(uuid.UUID(int=1))
    assert fake.deleted() == [f"/api/v1/namespaces/{namespace}"]


def test_an_explicit_kubeconfig_wins_over_the_pods_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kubernetes.config

    from guara.deploy.apply import load_configuration

    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig("https://operator-chosen.invalid:6443"))

    def in_a_pod(client_configuration: Any) -> None:
        client_configuration.host = "https://in-cluster.invalid:443"

    monkeypatch.setattr(kubernetes.config, "load_incluster_config", in_a_pod)
    assert load_configuration(kubeconfig=config).host == "https://operator-chosen.invalid:6443"
    assert load_configuration().host == "https://in-cluster.invalid:443"


@pytest.mark.lab
def test_credentials_removed_while_a_deploy_applies_stay_removed(
    kubernetes_platform: AppContext, fake_cluster: tuple[FakeKubernetes, LabServer], lab: Lab
) -> None:
    """The deploy read the credentials, then they were removed (and the pull Secret deleted) while it
    was applying: the deploy must not leave the pull Secret behind, and says what happened."""
    fake, _server = fake_cluster
    fake.hold_first_apply = threading.Event()
    try:
        with make_client(kubernetes_platform) as http:
            client = ApiUser.sign_up(http, kubernetes_platform, "owner@example.com")
            project_id = client.project()
            created = client.post(
                f"/projects/{project_id}/services",
                json={
                    "name": "api",
                    "image": lab.token.ref("acme/api:v1"),
                    "registry_credentials": credentials(lab),
                },
            )
            service_id = created.json()["id"]
            started = client.post(f"/services/{service_id}/deployments")
            assert started.status_code == 202
            assert fake.first_apply_arrived.wait(30), "the deploy never started applying"
            removed = client.delete(f"/services/{service_id}/registry-credentials").json()
            assert removed["removed"] is True
            fake.hold_first_apply.set()
            done = wait_for(client, service_id, started.json()["id"])
    finally:
        fake.hold_first_apply.set()
    assert not fake.holds("/secrets/api-registry")
    assert done["status"] == "failed"
    assert done["code"] == "credentials_removed", done["message"]
    assert "removed" in done["message"] and "deploy again" in done["message"]
