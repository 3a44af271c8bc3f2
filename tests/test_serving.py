"""How `guara serve` holds connections: header and body deadlines, bodies read only after the caller is
known, a cap on concurrency. Run in-process on loopback with short limits (the mechanism under test is
the same as with the defaults)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from guara.app import create_app
from guara.context import AppContext
from guara.core import accounts
from guara.http.bodies import RequestBodies
from guara.serving import HeaderDeadlineProtocol, server_config
from tests.support import free_port, run


class _QuickHeaders(HeaderDeadlineProtocol):
    header_timeout_s = 1.0


@contextlib.contextmanager
def _serving(context: AppContext, **overrides: object) -> Iterator[int]:
    port = free_port()
    app = create_app(context)
    config = server_config(app, host="127.0.0.1", port=port, log_level="warning", **overrides)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _response_head(sock: socket.socket, seconds: float) -> bytes:
    sock.settimeout(seconds)
    received = b""
    with contextlib.suppress(TimeoutError):
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def test_a_connection_that_never_sends_headers_is_closed(context: AppContext) -> None:
    with _serving(context, http=_QuickHeaders) as port, _connect(port) as idle:
        assert _closed_within(idle, 10), "an idle connection was kept open"


def test_trickled_headers_do_not_extend_the_deadline(context: AppContext) -> None:
    with _serving(context, http=_QuickHeaders) as port, _connect(port) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed = False
        # A header byte every 0.2 s would keep a per-read timeout alive forever.
        while time.monotonic() - started < 10:
            try:
                slow.sendall(b"X")
            except OSError:
                closed = True
                break
            if _closed_within(slow, 0.2):
                closed = True
                break
        assert closed, "a slowloris trickle kept the connection"


def test_a_stranger_s_body_is_refused_before_it_is_read(context: AppContext) -> None:
    """401 at once, though the announced body never arrives: nothing was buffered for a stranger."""
    with _serving(context) as port, _connect(port) as sock:
        sock.sendall(
            b"POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200000\r\n\r\n"
        )
        head = _response_head(sock, 10)
        assert head.startswith(b"HTTP/1.1 401"), head


def test_a_dashboard_form_from_a_stranger_goes_to_sign_in(context: AppContext) -> None:
    with _serving(context) as port, _connect(port) as sock:
        sock.sendall(
            b"POST /projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 200000\r\n\r\n"
        )
        head = _response_head(sock, 10)
        assert head.startswith(b"HTTP/1.1 303") and b"location: /login" in head.lower(), head


def test_a_known_caller_s_slow_body_times_out(context: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    run(accounts.create_user, context, email="slow@example.com", password="long enough pw")
    token = run(accounts.create_api_token, context, email="slow@example.com")
    monkeypatch.setattr(RequestBodies, "timeout_s", 1.0)
    with _serving(context) as port, _connect(port) as sock:
        sock.sendall(
            b"POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {token}\r\n".encode()
            + b"Content-Length: 100\r\n\r\n{"
        )
        head = _response_head(sock, 10)
        assert head.startswith(b"HTTP/1.1 408"), head


def test_concurrency_past_the_cap_is_refused(context: AppContext) -> None:
    with _serving(context, limit_concurrency=2) as port:
        held = [_connect(port) for _ in range(2)]
        try:
            with _connect(port) as extra:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                head = _response_head(extra, 10)
                assert head.startswith(b"HTTP/1.1 503"), head
        finally:
            for sock in held:
                sock.close()


def test_guara_serve_uses_these_limits() -> None:
    config = server_config(object(), host="127.0.0.1", port=1, log_level="info")
    assert config.http is HeaderDeadlineProtocol
    assert config.limit_concurrency and config.timeout_keep_alive
