"""Socket audit: proves every outbound socket of guara is opened through the network guard.

The ``socket_audit`` fixture patches ``socket.socket.connect`` and ``connect_ex`` for one test. That
is the choke point every TCP connect of this process passes through: blocking code,
``socket.create_connection``, and asyncio's selector loop (``loop.create_connection`` ends in
``loop.sock_connect``, which calls ``sock.connect``). Each IPv4/IPv6 connect is recorded with its
address and whether it happened inside the guard's dial path (the guard sets a context variable
while it dials a checked address; asyncio and anyio carry it into the tasks that connect).

Use it in a suite with an autouse fixture::

    @pytest.fixture(autouse=True)
    def _every_socket_guarded(socket_audit):
        yield
        socket_audit.assert_all_guarded()

Limits: a C extension that connects without Python's socket object (uvloop, libpq, hiredis' own
sockets) is invisible here; Unix-domain sockets are not recorded.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from guara.netguard.backend import inside_guarded_dial


@dataclass(frozen=True)
class AuditedConnection:
    """One outbound connect attempt."""

    host: str
    port: int
    guarded: bool
    call: str  # "connect" or "connect_ex"


class SocketAudit:
    """The record of one test's outbound connects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[AuditedConnection] = []

    @property
    def connections(self) -> list[AuditedConnection]:
        with self._lock:
            return list(self._connections)

    @property
    def unguarded(self) -> list[AuditedConnection]:
        return [connection for connection in self.connections if not connection.guarded]

    def to(self, host: str, port: int | None = None) -> list[AuditedConnection]:
        """The recorded connects to ``host`` (and ``port`` when given)."""
        return [c for c in self.connections if c.host == host and (port is None or c.port == port)]

    def assert_all_guarded(self, *, ignore: Iterable[tuple[str, int]] = ()) -> None:
        """Fail when any connect bypassed the guard; ``ignore`` lists known test infrastructure."""
        ignored = set(ignore)
        offenders = [c for c in self.unguarded if (c.host, c.port) not in ignored]
        if offenders:
            listed = ", ".join(f"{c.host}:{c.port} ({c.call})" for c in offenders)
            raise AssertionError(f"{len(offenders)} connection(s) bypassed the network guard: {listed}")

    def record(self, sock: socket.socket, address: Any, call: str) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        host, port = str(address[0]), int(address[1])
        with self._lock:
            self._connections.append(AuditedConnection(host, port, inside_guarded_dial(), call))


@pytest.fixture
def socket_audit(monkeypatch: pytest.MonkeyPatch) -> SocketAudit:
    """Record every outbound TCP connect made during the test (see the module docstring).

    monkeypatch undoes the patch when the test ends.
    """
    audit = SocketAudit()
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def audited_connect(self: socket.socket, address: Any) -> None:
        audit.record(self, address, "connect")
        original_connect(self, address)

    def audited_connect_ex(self: socket.socket, address: Any) -> int:
        audit.record(self, address, "connect_ex")
        return original_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", audited_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", audited_connect_ex)
    return audit


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> SocketAudit:
    """Like ``socket_audit``, and every connect to an address off loopback is refused on the spot (as
    ECONNREFUSED; nothing leaves the machine). For tests that feed generated hosts to real code."""
    audit = SocketAudit()
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def off_loopback(self: socket.socket, address: Any) -> bool:
        if self.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        return not ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback

    def refusing_connect(self: socket.socket, address: Any) -> None:
        audit.record(self, address, "connect")
        if off_loopback(self, address):
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused by the test: off loopback")
        original_connect(self, address)

    def refusing_connect_ex(self: socket.socket, address: Any) -> int:
        audit.record(self, address, "connect_ex")
        if off_loopback(self, address):
            return errno.ECONNREFUSED
        return original_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", refusing_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", refusing_connect_ex)
    return audit
