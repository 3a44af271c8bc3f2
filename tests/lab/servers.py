"""Small HTTPS servers on a free loopback port, each in a thread: for fake registries and token issuers.

`start_https_server` takes either a `BaseHTTPRequestHandler` subclass (served by a threading stdlib
server: full control over bytes and timing, good for hostile fakes) or an ASGI application (served by
uvicorn). The port is bound before the server starts, so there is no race for it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import trustme
import uvicorn

from tests.lab.tls import LAB_CERT_NAMES, lab_server_cert, server_ssl_context

ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], ASGIReceive, ASGISend], Awaitable[None]]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0


@dataclass
class LabServer:
    """A running server. `host` is the authority ("127.0.0.1:PORT" or "[::1]:PORT")."""

    url: str
    host: str
    port: int
    _stop: Callable[[], None] = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if not self._stopped:
            self._stopped = True
            self._stop()

    def __enter__(self) -> LabServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_https_server(
    app: type[BaseHTTPRequestHandler] | ASGIApp,
    *,
    ca: trustme.CA | None = None,
    cert: trustme.LeafCert | None = None,
    host: str = "127.0.0.1",
    tls: bool = True,
) -> LabServer:
    """Serve `app` on `host` (loopback only) at a free port, in a daemon thread.

    TLS uses `cert` when given, else a certificate for the lab names issued by `ca`.
    `tls=False` serves plain HTTP (for tests of plain-HTTP refusal). Stop it with `.stop()` or `with`.
    """
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"lab servers listen on loopback only, not {host!r}")
    context: ssl.SSLContext | None = None
    if tls:
        if cert is None:
            if ca is None:
                raise ValueError("a TLS lab server needs `ca` or `cert`")
            cert = lab_server_cert(ca, LAB_CERT_NAMES)
        context = server_ssl_context(cert)
    sock = _bind_loopback(host)
    port = sock.getsockname()[1]
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    scheme = "https" if tls else "http"
    try:
        if isinstance(app, type) and issubclass(app, BaseHTTPRequestHandler):
            stop = _serve_handler(sock, app, context)
        else:
            stop = _serve_asgi(sock, cast("ASGIApp", app), cert if tls else None)
    except BaseException:
        sock.close()
        raise
    return LabServer(url=f"{scheme}://{authority}", host=authority, port=port, _stop=stop)


def _bind_loopback(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


class _LabHTTPServer(ThreadingHTTPServer):
    """Threading server over an already-bound socket; TLS handshakes run in the handler thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        sock: socket.socket,
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.address_family = sock.family
        host, port = sock.getsockname()[:2]
        # HTTPServer.server_bind would resolve the name (getfqdn); it is loopback, name it directly.
        self.server_name = host
        self.server_port = port
        self._context = context

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = self.socket.accept()
        if self._context is not None:
            # The handshake waits for the handler thread, so one slow client cannot stall accept().
            conn = self._context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            request.do_handshake()
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients of fakes hang up or refuse certificates on purpose; that is not a server failure.
        return


def _serve_handler(
    sock: socket.socket,
    handler: type[BaseHTTPRequestHandler],
    context: ssl.SSLContext | None,
) -> Callable[[], None]:
    server = _LabHTTPServer(sock, handler, context)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="lab-https", daemon=True
    )
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(_STOP_TIMEOUT_S)

    return stop


def _serve_asgi(sock: socket.socket, app: ASGIApp, cert: trustme.LeafCert | None) -> Callable[[], None]:
    tls_dir = Path(tempfile.mkdtemp(prefix="guara-lab-tls-"))
    pem_file = tls_dir / "server.pem"
    if cert is not None:
        cert.private_key_and_cert_chain_pem.write_to_path(str(pem_file))
    config = uvicorn.Config(
        app,
        ssl_certfile=str(pem_file) if cert is not None else None,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="auto",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="lab-asgi", daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(_STOP_TIMEOUT_S)
            sock.close()
            shutil.rmtree(tls_dir, ignore_errors=True)
            raise RuntimeError("the lab ASGI server did not start")
        time.sleep(0.005)

    def stop() -> None:
        server.should_exit = True
        server.force_exit = True
        thread.join(_STOP_TIMEOUT_S)
        with contextlib.suppress(OSError):
            sock.close()
        shutil.rmtree(tls_dir, ignore_errors=True)

    return stop
