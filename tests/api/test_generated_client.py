"""An SDK generated from guara's OpenAPI document works: openapi-python-client makes a client with
short operation names (``create_service``, ``test_connection``, ``start_deployment``), and it drives
the create-service → Test Connection → deploy flow against the lab."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab import Lab
from tests.support import ApiUser

pytestmark = pytest.mark.lab

PACKAGE = "guara_sdk"


@pytest.fixture
def sdk(lab_client: ApiUser, tmp_path: Path) -> Iterator[Any]:
    """The generated package, imported from a temporary directory (and forgotten afterwards)."""
    spec = tmp_path / "openapi.json"
    spec.write_bytes(lab_client.http.get("/api/v1/openapi.json").content)
    config = tmp_path / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter runs: nothing but the generator is needed
    generated = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            f"--path={spec}",
            "--meta=none",
            f"--output-path={tmp_path / PACKAGE}",
            f"--config={config}",
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def _operation(sdk: Any, tag: str, name: str) -> Any:
    return importlib.import_module(f"{sdk.__name__}.api.{tag}.{name}")


def test_a_generated_client_creates_tests_and_deploys(sdk: Any, lab_client: ApiUser, lab: Lab) -> None:
    models = importlib.import_module(f"{sdk.__name__}.models")
    lab_client.http.headers.update(lab_client.headers)
    client = sdk.Client(base_url=str(lab_client.http.base_url)).set_httpx_client(lab_client.http)
    image = lab.token.ref("acme/api:v1")
    creds = {"registry": lab.token.host, "username": "alice", "password": lab.token.users["alice"]}

    project = _operation(sdk, "projects", "create_project").sync(
        client=client, body=models.ProjectCreate.from_dict({"name": "sdk"})
    )
    assert isinstance(project, models.ProjectPublic), project
    service = _operation(sdk, "services", "create_service").sync(
        project.id,
        client=client,
        body=models.ServiceCreate.from_dict({"name": "api", "image": image, "registry_credentials": creds}),
    )
    assert isinstance(service, models.ServicePublic), service
    tested = _operation(sdk, "registry_credentials", "test_connection").sync(
        client=client,
        body=models.RegistryTest.from_dict(
            {"image": image, "registry": lab.token.host, "service_id": str(service.id)}
        ),
    )
    assert isinstance(tested, models.PreflightPublic) and tested.ok, tested
    started = _operation(sdk, "deployments", "start_deployment").sync(service.id, client=client)
    assert isinstance(started, models.DeploymentPublic), started
    get_deployment = _operation(sdk, "deployments", "get_deployment")
    deadline = time.monotonic() + 30
    while (deployed := get_deployment.sync(service.id, started.id, client=client)).status in (
        "pending",
        "resolving",
        "starting",
    ):
        assert time.monotonic() < deadline, deployed
        time.sleep(0.05)
    assert deployed.status == "succeeded" and deployed.digest == lab.token.images["acme/api:v1"]

    missing = _operation(sdk, "services", "get_service").sync(uuid.uuid4(), client=client)
    assert isinstance(missing, models.ErrorPublic) and missing.code == "not_found"
