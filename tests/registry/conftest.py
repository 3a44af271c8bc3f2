"""Registry suite fixtures: every socket must come from the network guard; fakes are cleaned up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme

from tests.registry.fakes import FakeServer, Route
from tests.socket_audit import SocketAudit

LOOPBACK_ONLY = ("127.0.0.0/8",)


@pytest.fixture(autouse=True)
def _every_socket_guarded(socket_audit: SocketAudit) -> Iterator[None]:
    yield
    socket_audit.assert_all_guarded()


class Fakes:
    """Starts FakeServers with the lab CA; all are stopped when the test ends."""

    def __init__(self, ca: trustme.CA) -> None:
        self.ca = ca
        self._started: list[FakeServer] = []

    def start(self, route: Route, *, bind: str = "127.0.0.1", tls: bool = True) -> FakeServer:
        server = FakeServer(route, ca=self.ca, bind=bind, tls=tls).__enter__()
        self._started.append(server)
        return server

    def stop_all(self) -> None:
        for server in reversed(self._started):
            server.stop()


@pytest.fixture
def fakes(lab_ca: trustme.CA) -> Iterator[Fakes]:
    started = Fakes(lab_ca)
    yield started
    started.stop_all()
