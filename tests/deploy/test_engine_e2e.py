"""Deploys run for real: `guara serve` on PostgreSQL with GUARA_RUNTIME=engine, against a real Podman and
a real dockerd, pulling private busybox apps from the registry lab with the stored credentials.

Each scenario ends with what a user would check: the app's body on the published address, which
container still serves after a failure, and what the engine holds afterwards.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest
from sqlalchemy import create_engine, text

from guara.core.engine_runtime import DEPLOYMENT_LABEL, MANAGED_LABEL
from guara.secrets import ensure_key_file
from tests.conftest import PG_ADMIN_URL
from tests.lab import AccessRule, Lab
from tests.lab.apps import APP_V1, APP_V2, CRASH_V1, AppImages
from tests.lab.engines import EngineHandle, credential_needles, grep_engine_state
from tests.support import Served, cli_user_with_token, serving

pytestmark = [pytest.mark.lab, pytest.mark.engine, pytest.mark.postgres]

TERMINAL = {"running", "failed", "succeeded"}


@dataclass
class Guara:
    """A `guara serve` on the engine, and an API client signed in as its owner."""

    served: Served
    api: httpx.Client
    env: dict[str, str]
    engine: EngineHandle
    log: Path

    def deploy(self, service_id: str, *, within: float = 90.0) -> dict[str, Any]:
        started = self.api.post(f"/services/{service_id}/deployments")
        assert started.status_code == 202, started.text
        return self.wait(service_id, started.json()["id"], within=within)

    def wait(self, service_id: str, deployment_id: str, *, within: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            body: dict[str, Any] = self.api.get(f"/services/{service_id}/deployments/{deployment_id}").json()
            if body["status"] in TERMINAL:
                return body
            assert time.monotonic() < deadline, f"deployment still {body['status']}: {body['message']}"
            time.sleep(0.1)

    def container(self, container_id: str) -> dict[str, Any] | None:
        client = self.engine.client()
        try:
            attrs: dict[str, Any] = client.api.inspect_container(container_id)
            return attrs
        except docker.errors.NotFound:
            return None
        finally:
            client.close()

    def until_gone(self, deployment_id: str, *, within: float = 30.0) -> None:
        """Wait until no container of this deployment is left (the swap removes it right after)."""
        deadline = time.monotonic() + within
        while [c for c in self.managed() if c["Labels"][DEPLOYMENT_LABEL] == deployment_id]:
            assert time.monotonic() < deadline, f"the container of {deployment_id} is still there"
            time.sleep(0.1)

    def managed(self) -> list[dict[str, Any]]:
        client = self.engine.client()
        try:
            found: list[dict[str, Any]] = client.api.containers(
                all=True, filters={"label": f"{MANAGED_LABEL}=guara"}
            )
            return found
        finally:
            client.close()


def _body(url: str) -> str:
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.get(url).text


@pytest.fixture
def engine_env(
    engine: EngineHandle, lab: Lab, app_images: AppImages, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database and data dir for one `guara serve` on this engine."""
    name = f"guara_engine_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    key_file = tmp_path / "data" / "master.key"
    ensure_key_file(key_file)
    yield {
        **{k: v for k, v in os.environ.items() if not k.startswith("GUARA_") and k != "DOCKER_HOST"},
        "GUARA_DATA_DIR": str(tmp_path / "data"),
        "GUARA_DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name,
        "GUARA_MASTER_KEY_FILE": str(key_file),
        "GUARA_SSRF_ALLOW": "127.0.0.0/8",
        "GUARA_EXTRA_CA_FILE": str(lab.ca_file),
        "GUARA_RUNTIME": "engine",
        "GUARA_ENGINE_URL": engine.url,
        "GUARA_ENGINE_START_TIMEOUT_S": "20",
        # Debug: every line the server logs is searched by the canary test.
        "GUARA_LOG_LEVEL": "debug",
    }
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def guara(engine_env: dict[str, str], engine: EngineHandle, tmp_path: Path) -> Iterator[Guara]:
    token = cli_user_with_token(engine_env, "owner@example.com", "long enough pw")
    with serving(engine_env, tmp_path / "guara.log") as served:
        api = httpx.Client(
            base_url=served.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        yield Guara(served, api, engine_env, engine, tmp_path / "guara.log")
        api.close()


def _service(guara: Guara, app_images: AppImages, *, project: str = "shop", **body: Any) -> str:
    project_id = guara.api.post("/projects", json={"name": project}).json()["id"]
    source = app_images.token
    created = guara.api.post(
        f"/projects/{project_id}/services",
        json={
            "name": "web",
            "image": source.tag_ref(APP_V1),
            "registry_credentials": {
                "registry": source.host,
                "username": source.username,
                "password": source.password,
            },
            **body,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_private_images_run_swap_and_fail_safely(guara: Guara, app_images: AppImages) -> None:
    source = app_images.token
    service_id = _service(guara, app_images)

    first = guara.deploy(service_id)
    assert first["status"] == "running", first["message"]
    assert first["digest"] == source.digests[APP_V1]
    assert _body(first["url"]) == app_images.bodies[APP_V1]
    assert guara.api.get(f"/services/{service_id}").json()["url"] == first["url"]

    # A new tag: the new body answers, the old container is gone, its deployment replaced.
    assert (
        guara.api.patch(f"/services/{service_id}", json={"image": source.tag_ref(APP_V2)}).status_code == 200
    )
    second = guara.deploy(service_id)
    assert second["status"] == "running", second["message"]
    assert _body(second["url"]) == app_images.bodies[APP_V2]
    old = guara.api.get(f"/services/{service_id}/deployments/{first['id']}").json()
    assert old["status"] == "replaced" and old["url"] is None
    guara.until_gone(first["id"])

    # A crashing image: start_failed with its log lines; the running app keeps serving.
    guara.api.patch(f"/services/{service_id}", json={"image": source.tag_ref(CRASH_V1)})
    crashed = guara.deploy(service_id)
    assert (crashed["status"], crashed["code"]) == ("failed", "start_failed"), crashed["message"]
    for line in (*app_images.crash_stdout, *app_images.crash_stderr):
        assert line in crashed["message"]
    assert _body(second["url"]) == app_images.bodies[APP_V2]

    # Wrong credentials (saved without verifying): auth_failed before any pull; still serving.
    guara.api.patch(f"/services/{service_id}", json={"image": source.tag_ref(APP_V1)})
    wrong = guara.api.put(
        f"/services/{service_id}/registry-credentials",
        json={"registry": source.host, "password": "not the password", "skip_verification": True},
    )
    assert wrong.status_code == 200, wrong.text
    refused = guara.deploy(service_id)
    assert (refused["status"], refused["code"]) == ("failed", "auth_failed"), refused["message"]
    assert _body(second["url"]) == app_images.bodies[APP_V2]

    # Removed credentials: nothing to clean on the engine; the container keeps running, and the next
    # deploy of the private image fails with the seed's message.
    removed = guara.api.delete(f"/services/{service_id}/registry-credentials").json()
    assert removed["removed"] is True
    assert _body(second["url"]) == app_images.bodies[APP_V2]
    anonymous = guara.deploy(service_id)
    assert anonymous["status"] == "failed" and anonymous["code"] in ("auth_failed", "manifest_not_found")
    assert "add the credentials back" in anonymous["message"]
    assert _body(second["url"]) == app_images.bodies[APP_V2]

    logs = guara.api.get(f"/services/{service_id}/logs", params={"tail": 5})
    assert logs.status_code == 200 and logs.json()["deployment_id"] == second["id"]

    stopped = guara.api.post(f"/services/{service_id}/stop")
    assert stopped.json() == {"stopped": 1}
    assert guara.api.get(f"/services/{service_id}").json()["url"] is None
    assert not guara.managed()


def test_a_deploy_cut_off_by_a_crash_leaves_no_container(
    engine_env: dict[str, str], engine: EngineHandle, app_images: AppImages, tmp_path: Path
) -> None:
    """kill -9 while a container is starting: the next guara ends the deployment as interrupted and
    removes the container (labels are the link), and reconciles containers nobody runs any more."""
    token = cli_user_with_token(engine_env, "owner@example.com", "long enough pw")
    env = {**engine_env, "GUARA_ENGINE_START_TIMEOUT_S": "120"}
    headers = {"Authorization": f"Bearer {token}"}
    with serving(env, tmp_path / "doomed.log") as doomed:
        api = httpx.Client(base_url=doomed.url + "/api/v1", headers=headers, timeout=30)
        guara = Guara(doomed, api, env, engine, tmp_path / "doomed.log")
        # Ready only when this path answers: it never does, so the deploy stays in `starting`.
        service_id = _service(guara, app_images, health_path="/never-ready")
        started = api.post(f"/services/{service_id}/deployments").json()
        deadline = time.monotonic() + 60
        while not [c for c in guara.managed() if c["Labels"][DEPLOYMENT_LABEL] == started["id"]]:
            assert time.monotonic() < deadline, "no container was started"
            time.sleep(0.1)
        doomed.kill()
    # A container some earlier guara left behind, whose deployment is long gone.
    client = engine.client()
    try:
        client.api.create_container(
            _pulled_image(guara),
            name=f"guara-orphan-{uuid.uuid4().hex[:8]}",
            labels={MANAGED_LABEL: "guara", DEPLOYMENT_LABEL: str(uuid.uuid4()), "guara.dev/project-id": "x"},
        )
    finally:
        client.close()
    with serving(env, tmp_path / "next.log") as survivor:
        api = httpx.Client(base_url=survivor.url + "/api/v1", headers=headers, timeout=30)
        guara = Guara(survivor, api, env, engine, tmp_path / "next.log")
        ended = guara.wait(service_id, started["id"], within=60)
        assert (ended["status"], ended["code"]) == ("failed", "interrupted")
        deadline = time.monotonic() + 60
        while guara.managed():
            assert time.monotonic() < deadline, f"containers left: {[c['Names'] for c in guara.managed()]}"
            time.sleep(0.2)


def test_deleting_a_running_service_removes_its_container(guara: Guara, app_images: AppImages) -> None:
    service_id = _service(guara, app_images)
    running = guara.deploy(service_id)
    assert running["status"] == "running", running["message"]
    assert guara.managed()
    assert guara.api.delete(f"/services/{service_id}").status_code == 204
    assert not guara.managed()
    assert guara.api.get(f"/services/{service_id}").status_code == 404
    [history] = guara.api.get(f"/services/{service_id}/deployments").json()
    assert (history["id"], history["status"], history["url"]) == (running["id"], "stopped", None)

    # A project deleted with its services takes its engine network along.
    other = _service(guara, app_images, project="gone")
    assert guara.deploy(other)["status"] == "running"
    project_id = guara.api.get(f"/services/{other}").json()["project_id"]
    assert _networks(guara, project_id)
    assert guara.api.delete(f"/projects/{project_id}?cascade=true").status_code == 204
    assert not guara.managed()
    assert not _networks(guara, project_id)


def _networks(guara: Guara, project_id: str) -> list[str]:
    client = guara.engine.client()
    try:
        return [n["Name"] for n in client.api.networks() if n["Name"] == f"guara-{uuid.UUID(project_id).hex}"]
    finally:
        client.close()


def _pulled_image(guara: Guara) -> str:
    client = guara.engine.client()
    try:
        images = client.api.images()
        return str(images[0]["Id"])
    finally:
        client.close()


def test_projects_get_their_own_engine_networks(guara: Guara, app_images: AppImages) -> None:
    first = guara.deploy(_service(guara, app_images, project="one"))
    second = guara.deploy(_service(guara, app_images, project="two"))
    assert first["status"] == second["status"] == "running"
    networks = []
    for deployment in (first, second):
        container = next(c for c in guara.managed() if c["Labels"][DEPLOYMENT_LABEL] == deployment["id"])
        networks.append(set(guara.container(container["Id"])["NetworkSettings"]["Networks"]))  # type: ignore[index]
    assert len(networks[0]) == len(networks[1]) == 1 and networks[0] != networks[1]


def test_a_canary_password_through_a_real_engine_deploy_is_nowhere(
    guara: Guara, app_images: AppImages, lab: Lab
) -> None:
    """A unique registry password goes to the engine for one pull; afterwards no file the engine or
    guara wrote, no container's or image's inspect, and no answer holds it in any spelling."""
    canary = f"canary-{uuid.uuid4().hex}-ñ"
    user = f"canary{uuid.uuid4().hex[:8]}"
    lab.issuer.users[user] = canary
    lab.issuer.rules.append(AccessRule(user, "acme/*", frozenset({"pull"})))
    project_id = guara.api.post("/projects", json={"name": "canary"}).json()["id"]
    created = guara.api.post(
        f"/projects/{project_id}/services",
        json={
            "name": "web",
            "image": app_images.token.tag_ref(APP_V1),
            "registry_credentials": {"registry": app_images.token.host, "username": user, "password": canary},
        },
    )
    assert created.status_code == 201, created.text
    service_id = created.json()["id"]
    deployed = guara.deploy(service_id)
    assert deployed["status"] == "running", deployed["message"]
    assert _body(deployed["url"]) == app_images.bodies[APP_V1]
    answers = [
        guara.api.get(f"/services/{service_id}").content,
        guara.api.get(f"/services/{service_id}/deployments").content,
        guara.api.get(f"/services/{service_id}/logs").content,
        guara.api.get(f"/projects/{project_id}/audit-logs").content,
    ]
    needles = credential_needles(user, canary)
    assert grep_engine_state(guara.engine, needles) == []
    client = guara.engine.client()
    try:
        inspected = [json.dumps(client.api.inspect_container(c["Id"])).encode() for c in guara.managed()]
        inspected += [json.dumps(client.api.inspect_image(i["Id"])).encode() for i in client.api.images()]
    finally:
        client.close()
    data_dir = Path(guara.env["GUARA_DATA_DIR"])
    files = [path.read_bytes() for path in data_dir.rglob("*") if path.is_file()]
    assert b"DEBUG" in guara.log.read_bytes()
    haystacks = [*answers, *inspected, *files, guara.engine.log_file.read_bytes(), guara.log.read_bytes()]
    assert [needle for needle in needles for hay in haystacks if needle in hay] == []
