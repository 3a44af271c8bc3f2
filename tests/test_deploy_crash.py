"""A deployment belongs to the process running it: when that process dies (kill -9), another guara
process sharing the database ends the deployment as interrupted without a restart, and the service can
be deployed again at once."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from guara.core import accounts, projects, services
from tests.conftest import build_context
from tests.deploy.fakes import hanging_registry
from tests.lab.fixtures import HttpsServerFactory
from tests.support import run, serving


def _deployment(api: httpx.Client, service_id: str, deployment_id: str) -> dict[str, Any]:
    response = api.get(f"/services/{service_id}/deployments/{deployment_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _until(api: httpx.Client, service_id: str, deployment_id: str, statuses: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body = _deployment(api, service_id, deployment_id)
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, f"deployment still {body['status']}"
        time.sleep(0.1)


def test_a_deploy_cut_off_by_a_crash_is_ended_by_another_process(
    settings_env: dict[str, str], lab_ca_file: Path, lab_https_server: HttpsServerFactory, tmp_path: Path
) -> None:
    release = threading.Event()
    registry = lab_https_server(hanging_registry(release))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GUARA_")},
        **settings_env,
        "GUARA_EXTRA_CA_FILE": str(lab_ca_file),
        "GUARA_PREFLIGHT_TIMEOUT_S": "60",  # only the crash may end this deployment
    }
    arrange = build_context(settings_env)
    arrange.db.upgrade()
    owner = run(accounts.create_user, arrange, email="crash@example.com", password="long enough pw")
    token = run(accounts.create_api_token, arrange, email="crash@example.com")
    project = run(projects.create_project, arrange, owner, name="p")
    image = f"{registry.host}/acme/slow:v1"
    service = run(services.create_service, arrange, owner, project_id=project.id, name="s", image=image)
    arrange.close()
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with serving(env, tmp_path / "a.log") as doomed, serving(env, tmp_path / "b.log") as survivor:
            a = httpx.Client(base_url=doomed.url + "/api/v1", headers=headers, timeout=30)
            b = httpx.Client(base_url=survivor.url + "/api/v1", headers=headers, timeout=30)
            started = a.post(f"/services/{service.id}/deployments")
            assert started.status_code == 202, started.text
            deployment_id = started.json()["id"]
            _until(b, str(service.id), deployment_id, {"resolving"})
            doomed.kill()
            ended = _until(b, str(service.id), deployment_id, {"failed", "succeeded"})
            assert (ended["status"], ended["code"]) == ("failed", "interrupted")
            again = b.post(f"/services/{service.id}/deployments")
            assert again.status_code == 202, again.text
    finally:
        release.set()
