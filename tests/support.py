"""Helpers for tests: signed-in API clients over the real ASGI app, and `guara serve` processes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
from fastapi.testclient import TestClient

from guara.app import create_app
from guara.context import AppContext
from guara.core import accounts

T = TypeVar("T")


def run(use_case: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run an async use case of guara.core from synchronous test code (in a worker thread when this
    thread's event loop is busy, as under Playwright's sync API)."""
    call = functools.partial(anyio.run, functools.partial(use_case, *args, **kwargs))
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return call()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


class ManualClock:
    """A monotonic clock the test moves by hand (``clock.now += 10``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """A running `guara serve` process."""

    url: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        """kill -9: no shutdown, no cleanup, like a crash."""
        self.process.kill()
        self.process.wait(timeout=15)


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path, *args: str) -> Iterator[Served]:
    """`guara serve` (with ``args``) as a real process on a free loopback port, until the block ends
    (when it is still running, it is asked to stop)."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "guara.cli", "serve", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield Served(url, process)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)


@contextlib.contextmanager
def serve(env: dict[str, str], log: Path) -> Iterator[str]:
    """`guara serve` as a real process on a free loopback port, until the block ends; yields its URL."""
    with serving(env, log) as served:
        yield served.url


@contextlib.contextmanager
def make_client(context: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context), raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass
class ApiUser:
    http: TestClient
    email: str
    token: str

    @classmethod
    def sign_up(
        cls, http: TestClient, context: AppContext, email: str, password: str = "correct horse 1"
    ) -> ApiUser:
        run(accounts.create_user, context, email=email, password=password)
        return cls(http, email, run(accounts.create_api_token, context, email=email))

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.request(method, "/api/v1" + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def project(self, name: str = "demo") -> str:
        response = self.post("/projects", json={"name": name})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def service(self, project_id: str, name: str = "api", image: str = "ghcr.io/acme/api:v1") -> str:
        response = self.post(f"/projects/{project_id}/services", json={"name": name, "image": image})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


IN_PROGRESS = ("pending", "resolving", "starting")


def settled_deployment(
    get: Callable[[str], httpx.Response], service_id: str, deployment_id: str, *, timeout_s: float = 30
) -> dict[str, Any]:
    """The deployment once it has ended (``get`` reads a path under /api/v1: ``ApiUser.get`` or an
    httpx client based there)."""
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = get(f"/services/{service_id}/deployments/{deployment_id}").json()
        if body["status"] not in IN_PROGRESS:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def deploy_and_wait(
    post: Callable[[str], httpx.Response], get: Callable[[str], httpx.Response], service_id: str
) -> dict[str, Any]:
    """Start a deployment of the service and return it once it has ended."""
    started = post(f"/services/{service_id}/deployments")
    assert started.status_code == 202, started.text
    return settled_deployment(get, service_id, started.json()["id"])


def cli_user_with_token(env: dict[str, str], email: str, password: str = "a long password") -> str:
    """Create an account with the real `guara user create` and return a `guara token create` token
    for it (the way an operator starts)."""
    cli = [sys.executable, "-m", "guara.cli"]
    subprocess.run(
        [*cli, "user", "create", "--email", email, "--password-stdin"],
        input=password + "\n",
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return subprocess.run(
        [*cli, "token", "create", "--email", email], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
