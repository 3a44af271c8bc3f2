"""Deploy tests: API clients on the registry lab (guara trusts the lab CA and may reach loopback)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from guara.context import AppContext
from tests.api.conftest import lab_client, lab_context, lab_env  # noqa: F401  (fixtures)
from tests.conftest import build_context
from tests.lab import Lab
from tests.support import ApiUser, make_client

TERMINAL = ("succeeded", "failed")


def wait_for(client: ApiUser, service_id: str, deployment_id: str, *, within: float = 30.0) -> dict[str, Any]:
    """Poll the deployment until it is succeeded or failed; return it."""
    deadline = time.monotonic() + within
    while True:
        response = client.get(f"/services/{service_id}/deployments/{deployment_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in TERMINAL:
            return body
        assert time.monotonic() < deadline, f"deployment still {body['status']} after {within} s"
        time.sleep(0.02)


def deploy(client: ApiUser, service_id: str) -> dict[str, Any]:
    """Start a deployment (202, pending) and wait for its end."""
    started = client.post(f"/services/{service_id}/deployments")
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "pending"
    return wait_for(client, service_id, started.json()["id"])


def credentials(lab: Lab, user: str = "alice", **extra: Any) -> dict[str, Any]:
    return {"registry": lab.token.host, "username": user, "password": lab.token.users[user], **extra}


@pytest.fixture
def fast_timeout_client(lab_env: dict[str, str]) -> Iterator[tuple[ApiUser, AppContext]]:  # noqa: F811
    """A client whose platform gives every resolution 2 s."""
    context = build_context({**lab_env, "GUARA_PREFLIGHT_TIMEOUT_S": "2"})
    with make_client(context) as http:
        yield ApiUser.sign_up(http, context, "owner@example.com"), context
    context.db.dispose()
