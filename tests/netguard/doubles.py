"""Test doubles for the guard: scripted resolvers and a dialer that records instead of connecting."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import anyio
import httpcore

from guara.netguard.addresses import IPAddress

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class ScriptedResolver:
    """Answers each name from a script: the n-th call gets the n-th answer (the last one repeats).

    A name missing from the script fails like a DNS NXDOMAIN.
    """

    def __init__(self, script: dict[str, list[list[str]]]) -> None:
        self._script = script
        self.calls: list[str] = []

    @classmethod
    def static(cls, answers: dict[str, list[str]]) -> ScriptedResolver:
        return cls({name: [addresses] for name, addresses in answers.items()})

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        rounds = self._script.get(host)
        if rounds is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = rounds[min(self.calls.count(host), len(rounds)) - 1]
        return [ipaddress.ip_address(text) for text in answer]


class HangingResolver:
    """A resolver that never answers (a dead DNS server)."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


class RecordingDialer(httpcore.AsyncNetworkBackend):
    """Stands in for the socket layer: records what the guard dials and answers with canned bytes.

    Lets tests follow the guard to public addresses without sending a single packet.
    """

    def __init__(self, chunks: Iterable[bytes] = (OK_RESPONSE,)) -> None:
        self._chunks = list(chunks)  # what every new connection reads, one chunk per read
        self.dialed: list[tuple[str, int]] = []
        self.timeouts: list[float | None] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.dialed.append((host, port))
        self.timeouts.append(timeout)
        return httpcore.AsyncMockStream(list(self._chunks))

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


def redirect_response(location: str, status: int = 302) -> bytes:
    return f"HTTP/1.1 {status} Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
