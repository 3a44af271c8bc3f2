"""Pytest fixtures of the registry lab (registered as a plugin in tests/conftest.py).

- `lab` (session): the running lab; tests that use it get the `lab` marker automatically.
- `lab_ca` / `lab_ca_file` (session): the lab CA and its PEM file; they do not need docker-registry.
- `lab_https_server` (function): start fake HTTPS servers with a lab certificate; stopped after the test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import trustme

from tests.lab.lab import Lab, start_lab
from tests.lab.registry import REGISTRY_BINARY
from tests.lab.servers import ASGIApp, LabServer, start_https_server

HttpsServerFactory = Callable[..., LabServer]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)


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
        reason = f"{REGISTRY_BINARY} is missing (Debian package docker-registry)"
        if os.environ.get("CI"):
            pytest.fail(f"registry lab unavailable in CI: {reason}", pytrace=False)
        pytest.skip(reason)
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
