"""Readiness probes against loopback listeners that behave like the engines' port forwarding:
docker-proxy (accepts, then closes when nothing listens behind it), Podman (refuses), and apps."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from guara.deploy.probes import TCP_SETTLE_S, health_url, probe_address, probe_http, probe_tcp
from tests.lab.servers import start_https_server

pytestmark = pytest.mark.anyio


def _listener(behaviour: str) -> Iterator[int]:
    """A loopback TCP listener: "close" accepts and closes at once (docker-proxy with nothing behind
    it), "reset" accepts and resets, "hold" accepts and keeps the connection, "banner" speaks
    first, "answer" answers what it is sent."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if behaviour == "close":
                conn.close()
            elif behaviour == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()
            elif behaviour == "banner":
                conn.sendall(b"220 ready\r\n")
                held.append(conn)
            elif behaviour == "answer":
                conn.recv(1024)  # the probe's request
                conn.sendall(b"HTTP/1.0 404 Not Found\r\n\r\n")
                held.append(conn)
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        server.close()
        for conn in held:
            conn.close()


@pytest.fixture
def listener(request: pytest.FixtureRequest) -> Iterator[int]:
    yield from _listener(request.param)


@pytest.mark.parametrize("listener", ["close", "reset"], indirect=True)
async def test_an_accept_that_is_closed_at_once_is_not_ready(listener: int) -> None:
    started = time.monotonic()
    outcome = await probe_tcp("127.0.0.1", listener, timeout_s=2)
    # (A reset may also land before the connect completes: refused as "Connection reset by peer".)
    assert outcome is not None and ("closed it at once" in outcome or "reset" in outcome)
    assert time.monotonic() - started < TCP_SETTLE_S


@pytest.mark.parametrize("listener", ["hold", "banner"], indirect=True)
async def test_a_connection_that_stays_open_or_speaks_is_ready(listener: int) -> None:
    assert await probe_tcp("127.0.0.1", listener, timeout_s=2) is None


async def test_a_refused_connection_is_not_ready() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        # bound, not listening: refused
        assert await probe_tcp("127.0.0.1", port, timeout_s=2) == f"port {port}: Connection refused"


class _App(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        status = {"/ok": 200, "/moved": 302, "/down": 503}.get(self.path, 404)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "http://198.51.100.1/elsewhere")  # never followed
        self.send_header("Content-Length", "0")
        self.end_headers()


async def test_http_probe_wants_a_status_below_400_and_follows_nothing() -> None:
    with start_https_server(_App, tls=False) as app:
        base = f"http://127.0.0.1:{app.port}"
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
            assert await probe_http(client, health_url(base, "/ok"), timeout_s=2) is None
            assert await probe_http(client, health_url(base, "/moved"), timeout_s=2) is None
            assert (
                await probe_http(client, health_url(base, "/down"), timeout_s=2) == "GET /down answered 503"
            )
            assert (
                await probe_http(client, health_url(base, "/nope"), timeout_s=2) == "GET /nope answered 404"
            )


@pytest.mark.parametrize("listener", ["close"], indirect=True)
async def test_http_probe_of_docker_proxy_with_nothing_behind(listener: int) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        outcome = await probe_http(client, health_url(f"http://127.0.0.1:{listener}", "/"), timeout_s=2)
    # Closed before an answer: read as "disconnected", or as a reset once the request was sent.
    assert outcome in ("GET /: RemoteProtocolError", "GET /: ReadError")


def test_addresses_and_paths() -> None:
    assert probe_address("http://127.0.0.1:32768") == ("127.0.0.1", 32768)
    assert probe_address("http://[::1]:32768") == ("::1", 32768)
    for url in ("http://localhost:80", "https://127.0.0.1:1", "http://127.0.0.1"):
        with pytest.raises(ValueError):
            probe_address(url)
    base = "http://127.0.0.1:8080"
    assert str(health_url(base, "/healthz?full=1")) == "http://127.0.0.1:8080/healthz?full=1"
    assert health_url(base, "//evil.example/x").host == "127.0.0.1"
    assert health_url(base, "/@evil.example").host == "127.0.0.1"
    for path in ("healthz", "/a b", "/\x1b[31m", "/ü", "/" + "a" * 1024):
        with pytest.raises(ValueError):
            health_url(base, path)


@pytest.mark.parametrize("listener", ["answer"], indirect=True)
async def test_a_server_that_answers_is_ready_without_waiting_the_settle_time(listener: int) -> None:
    started = time.monotonic()
    assert await probe_tcp("127.0.0.1", listener, timeout_s=2) is None
    assert time.monotonic() - started < TCP_SETTLE_S
