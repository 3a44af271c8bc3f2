"""Pytest fixtures of the registry lab (registered as a plugin in tests/conftest.py).

- `lab` (session): the running lab; tests that use it get the `lab` marker automatically.
- `lab_ca` / `lab_ca_file` (session): the lab CA and its PEM file; they do not need docker-registry.
- `lab_https_server` (function): start fake HTTPS servers with a lab certificate; stopped after the test.
- `moto_aws` / `google_token_server` (session): AWS's and Google's token services (`tests.lab.cloud`).

Container engines (`tests.lab.engines`); tests that use any of these get the `engine` marker:
- `app_images` (session): runnable busybox images pushed to the lab's Basic and token registries
  (`tests.lab.apps.AppImages`); only built when a test asks for them.
- `lab_engine_trust` (session): the lab CA written to `/etc/containers/certs.d/<host:port>/ca.crt` and
  `/etc/docker/certs.d/<host:port>/ca.crt` for each lab registry; removed at the end.
- `podman_engine` / `docker_engine` (session): one engine each per session (`EngineHandle`), trusting
  the lab; every container is removed and the engine stopped at the end.
- `engine` (session, parametrized `podman`, `docker`): the test runs once on each engine.
Missing binaries skip these tests with the reason, except in CI (`CI` set), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import trustme

from tests.lab.apps import AppImages, busybox_problem, push_app_images
from tests.lab.cloud import GoogleTokenServer, MotoAws, start_moto_aws
from tests.lab.engines import ENGINE_NAMES, EngineHandle, EngineName, engine_problem, start_engine
from tests.lab.lab import Lab, start_lab
from tests.lab.registry import REGISTRY_BINARY
from tests.lab.servers import ASGIApp, LabServer, start_https_server
from tests.lab.trust import trust_registries

HttpsServerFactory = Callable[..., LabServer]


_ENGINE_FIXTURES = frozenset({"engine", "podman_engine", "docker_engine", "app_images", "lab_engine_trust"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "lab" in names:
            item.add_marker(pytest.mark.lab)
        if _ENGINE_FIXTURES.intersection(names):
            item.add_marker(pytest.mark.engine)


def _unavailable(what: str, reason: str) -> None:
    """Skip with the reason; in CI (`CI` set) fail instead: CI must run every test."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def lab_ca_file(lab_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lab-ca") / "ca.pem"
    lab_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def lab(lab_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not REGISTRY_BINARY.exists():
        _unavailable("registry lab", f"{REGISTRY_BINARY} is missing (Debian package docker-registry)")
    with start_lab(tmp_path_factory.mktemp("lab"), ca=lab_ca) as running:
        yield running


@pytest.fixture
def lab_https_server(lab_ca: trustme.CA) -> Iterator[HttpsServerFactory]:
    """`lab_https_server(handler_class_or_asgi_app, host="127.0.0.1", tls=True) -> LabServer`."""
    started: list[LabServer] = []

    def start(
        app: type[BaseHTTPRequestHandler] | ASGIApp,
        *,
        host: str = "127.0.0.1",
        tls: bool = True,
        cert: trustme.LeafCert | None = None,
    ) -> LabServer:
        server = start_https_server(app, ca=lab_ca, cert=cert, host=host, tls=tls)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="session")
def moto_aws() -> Iterator[MotoAws]:
    """moto (ECR, STS, IAM) on loopback, IAM authentication on (`tests.lab.cloud`)."""
    with start_moto_aws() as running:
        yield running


@pytest.fixture(scope="session")
def google_token_server(lab_ca: trustme.CA) -> Iterator[GoogleTokenServer]:
    """A Google service-account token endpoint on loopback (`tests.lab.cloud`)."""
    server = GoogleTokenServer(lab_ca)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def app_images(lab: Lab) -> AppImages:
    problem = busybox_problem()
    if problem is not None:
        _unavailable("runnable lab images", problem)
    return push_app_images(lab)


@pytest.fixture(scope="session")
def lab_engine_trust(lab: Lab) -> Iterator[tuple[Path, ...]]:
    """The certs.d directories trusting the lab CA, for every lab registry and both engines."""
    with trust_registries([r.host for r in lab.registries], lab.ca.cert_pem.bytes()) as directories:
        yield directories


def _engine(name: EngineName, request: pytest.FixtureRequest) -> Iterator[EngineHandle]:
    problem = engine_problem(name)
    if problem is not None:
        _unavailable(f"the {name} engine", problem)
    request.getfixturevalue("lab_engine_trust")  # after the check: writing /etc needs root
    with start_engine(name) as handle:
        yield handle


@pytest.fixture(scope="session")
def podman_engine(request: pytest.FixtureRequest) -> Iterator[EngineHandle]:
    """Podman serving the Docker Engine API on a private socket (`EngineHandle.url`)."""
    yield from _engine("podman", request)


@pytest.fixture(scope="session")
def docker_engine(request: pytest.FixtureRequest) -> Iterator[EngineHandle]:
    """dockerd on a private socket (`EngineHandle.url`)."""
    yield from _engine("docker", request)


@pytest.fixture(scope="session", params=ENGINE_NAMES)
def engine(request: pytest.FixtureRequest) -> EngineHandle:
    """Each engine in turn (test ids `podman`, `docker`)."""
    handle: EngineHandle = request.getfixturevalue(f"{request.param}_engine")
    return handle
