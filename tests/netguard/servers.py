"""Tiny HTTP/HTTPS servers and bare listeners on loopback, run in threads for one test."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, str], bytes]
Responder = Callable[["RecordedRequest"], Reply]


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]  # lower-case names


def ok(_request: RecordedRequest) -> Reply:
    return 200, {}, b"ok"


def redirect_to(location: str, status: int = 302) -> Responder:
    def respond(_request: RecordedRequest) -> Reply:
        return status, {"Location": location}, b""

    return respond


@dataclass
class ServerRecord:
    requests: list[RecordedRequest] = field(default_factory=list)
    connections: int = 0
    sni: list[str | None] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse can be observed
    server: _Server

    def do_GET(self) -> None:
        request = RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()})
        self.server.record.requests.append(request)
        status, headers, body = self.server.responder(request)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    block_on_close = False

    def __init__(self, host: str, responder: Responder) -> None:
        self.record = ServerRecord()
        self.responder = responder
        super().__init__((host, 0), _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.record.connections += 1
        return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed TLS handshakes are expected in some tests


@dataclass
class RunningServer:
    host: str
    port: int
    record: ServerRecord
    scheme: str

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"


@contextlib.contextmanager
def serve(
    responder: Responder = ok, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> Iterator[RunningServer]:
    """Run an HTTP (or, with ``tls``, HTTPS) server on ``host`` until the block ends."""
    server = _Server(host, responder)
    if tls is not None:

        def remember_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            server.record.sni.append(name)

        tls.sni_callback = remember_sni
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield RunningServer(host, server.server_address[1], server.record, "https" if tls else "http")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class BareListener:
    """A listening socket nobody accepts on: any connection that reached it waits in the backlog."""

    def __init__(self, host: str) -> None:
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._sock.bind((host, 0))
        self._sock.listen(16)
        self.host = host
        self.port: int = self._sock.getsockname()[1]

    def arrived(self) -> int:
        """How many connections reached this listener (drains the backlog)."""
        self._sock.setblocking(False)
        count = 0
        while True:
            try:
                conn, _ = self._sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self._sock.close()


@contextlib.contextmanager
def bare_listener(host: str) -> Iterator[BareListener]:
    listener = BareListener(host)
    try:
        yield listener
    finally:
        listener.close()
