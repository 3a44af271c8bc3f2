"""Kubernetes pull Secrets of cloud registry credentials: rendered from a fresh token at deploy, then
re-applied from a newly exchanged token before it expires (on the runtime's reconcile rounds), against
the fake Kubernetes API, moto and the lab's Google token server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guara.context import AppContext
from guara.core.pull_secrets import REFRESH_AFTER_S, RETRY_AFTER_S
from guara.core.runtimes import KubernetesRuntime
from tests.conftest import build_context
from tests.deploy.conftest import deploy
from tests.deploy.fakes import FakeKubernetes, kubeconfig
from tests.deploy.test_apply import fake_cluster
from tests.lab import Lab, LabServer
from tests.lab.cloud import ECR_TOKEN_PASSWORD, GoogleTokenServer, MotoAws
from tests.socket_audit import SocketAudit
from tests.support import ApiUser, ManualClock, make_client, run

__all__ = ["fake_cluster"]

pytestmark = pytest.mark.lab


@pytest.fixture
def cloud_cluster(
    lab_env: dict[str, str],
    moto_aws: MotoAws,
    fake_cluster: tuple[FakeKubernetes, LabServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[AppContext, KubernetesRuntime, ManualClock]]:
    _fake, server = fake_cluster
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig(server.url))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    env = {
        **lab_env,
        "GUARA_RUNTIME": "kubernetes",
        "GUARA_KUBECONFIG": str(config),
        "GUARA_AWS_ENDPOINT_URL": moto_aws.url,
    }
    context = build_context(env)
    runtime = context.deployments.runtime
    assert isinstance(runtime, KubernetesRuntime)
    clock = ManualClock()
    runtime.pull_secrets.clock = clock
    yield context, runtime, clock
    context.db.dispose()


def secret_logins(fake: FakeKubernetes) -> list[dict[str, Any]]:
    """The logins of every pull Secret applied, in order."""
    found = []
    for request in fake.requests:
        if request.method == "PATCH" and request.body.get("kind") == "Secret":
            config = json.loads(base64.b64decode(request.body["data"][".dockerconfigjson"]))
            [login] = config["auths"].values()
            found.append(login)
    return found


def test_ecr_pull_secret_is_rendered_fresh_and_refreshed_before_it_expires(
    cloud_cluster: tuple[AppContext, KubernetesRuntime, ManualClock],
    fake_cluster: tuple[FakeKubernetes, LabServer],
    lab: Lab,
    moto_aws: MotoAws,
    socket_audit: SocketAudit,
) -> None:
    context, runtime, clock = cloud_cluster
    fake, cluster = fake_cluster
    with make_client(context) as http:
        client = ApiUser.sign_up(http, context, "owner@example.com")
        project_id = client.project()
        creds = {
            "registry": lab.basic.host,
            "kind": "aws_ecr",
            "aws_access_key_id": moto_aws.puller.access_key_id,
            "aws_secret_access_key": moto_aws.puller.secret_access_key,
            "aws_region": "eu-west-1",
        }
        created = client.post(
            f"/projects/{project_id}/services",
            json={"name": "api", "image": lab.basic.ref("acme/api:v1"), "registry_credentials": creds},
        )
        assert created.status_code == 201, created.text
        service_id = created.json()["id"]
        done = deploy(client, service_id)
        assert done["status"] == "succeeded", done["message"]
        assert "renewed before it expires" in done["message"]
        assert secret_logins(fake) == [
            {"username": "AWS", "password": ECR_TOKEN_PASSWORD, "auth": _auth("AWS", ECR_TOKEN_PASSWORD)}
        ]
        assert moto_aws.puller.secret_access_key not in json.dumps([r.body for r in fake.requests])

        # Not due yet: nothing is exchanged or applied.
        before = len(fake.requests)
        assert run(runtime.pull_secrets.refresh_due, context) == 0
        assert len(fake.requests) == before
        # Half the shortest token life later, a fresh token is exchanged and only the Secret applied.
        clock.now += 30 * 60
        assert run(runtime.pull_secrets.refresh_due, context) == 1
        assert [r.body["kind"] for r in fake.requests[before:]] == ["Secret"]
        assert len(secret_logins(fake)) == 2
        # Then every six hours for ECR (half of its 12-hour passwords).
        clock.now += REFRESH_AFTER_S["aws_ecr"] - 1
        assert run(runtime.pull_secrets.refresh_due, context) == 0
        clock.now += 1
        assert run(runtime.pull_secrets.refresh_due, context) == 1

        # An exchange that fails is retried a minute later; the Secret is left alone meanwhile.
        saved = client.put(
            f"/services/{service_id}/registry-credentials",
            json={**creds, "aws_secret_access_key": "now-a-wrong-secret", "skip_verification": True},
        )
        assert saved.status_code == 200, saved.text
        clock.now += REFRESH_AFTER_S["aws_ecr"]
        before = len(fake.requests)
        assert run(runtime.pull_secrets.refresh_due, context) == 0
        assert len(fake.requests) == before
        clock.now += RETRY_AFTER_S - 1
        assert run(runtime.pull_secrets.refresh_due, context) == 0

        # Removed credentials: their Secret is deleted and never refreshed again.
        assert client.delete(f"/services/{service_id}/registry-credentials").json()["removed"] is True
        clock.now += REFRESH_AFTER_S["aws_ecr"] * 2
        assert run(runtime.pull_secrets.refresh_due, context) == 0
        assert not fake.holds("/secrets/api-registry")
    # Every exchange and registry request went through the network guard; only the cluster API (the
    # operator's configuration, as before) is reached directly.
    assert [c for c in socket_audit.unguarded if c.port != cluster.port] == []
    assert socket_audit.to("127.0.0.1", moto_aws.port)


def test_google_pull_secret_is_refreshed_every_half_hour(
    cloud_cluster: tuple[AppContext, KubernetesRuntime, ManualClock],
    fake_cluster: tuple[FakeKubernetes, LabServer],
    lab: Lab,
    google_token_server: GoogleTokenServer,
) -> None:
    context, runtime, clock = cloud_cluster
    fake, _cluster = fake_cluster
    with make_client(context) as http:
        client = ApiUser.sign_up(http, context, "owner@example.com")
        project_id = client.project()
        creds = {
            "registry": lab.token.host,
            "kind": "google",
            "google_json_key": google_token_server.json_key(),
        }
        created = client.post(
            f"/projects/{project_id}/services",
            json={"name": "api", "image": lab.token.ref("acme/api:v1"), "registry_credentials": creds},
        )
        assert created.status_code == 201, created.text
        done = deploy(client, created.json()["id"])
        assert done["status"] == "succeeded", done["message"]
        [first] = secret_logins(fake)
        assert first["username"] == "oauth2accesstoken"
        for _ in range(3):
            clock.now += REFRESH_AFTER_S["google"]
            assert run(runtime.pull_secrets.refresh_due, context) == 1
        assert len(secret_logins(fake)) == 4


def test_after_a_restart_every_deployed_pull_secret_is_refreshed_once(
    cloud_cluster: tuple[AppContext, KubernetesRuntime, ManualClock],
    fake_cluster: tuple[FakeKubernetes, LabServer],
    lab: Lab,
    google_token_server: GoogleTokenServer,
) -> None:
    context, runtime, _clock = cloud_cluster
    fake, _cluster = fake_cluster
    with make_client(context) as http:
        client = ApiUser.sign_up(http, context, "owner@example.com")
        project_id = client.project()
        creds = {
            "registry": lab.token.host,
            "kind": "google",
            "google_json_key": google_token_server.json_key(),
        }
        created = client.post(
            f"/projects/{project_id}/services",
            json={"name": "api", "image": lab.token.ref("acme/api:v1"), "registry_credentials": creds},
        )
        assert deploy(client, created.json()["id"])["status"] == "succeeded"
        # Not deployed yet: a service with cloud credentials but no deployment is left alone.
        client.post(
            f"/projects/{project_id}/services",
            json={"name": "idle", "image": lab.token.ref("acme/api:v1"), "registry_credentials": creds},
        )
    restarted = KubernetesRuntime(runtime.applier)
    assert run(restarted.pull_secrets.refresh_due, context) == 1
    assert run(restarted.pull_secrets.refresh_due, context) == 0
    assert len(secret_logins(fake)) == 2


def _auth(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()
