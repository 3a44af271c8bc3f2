"""How ``guara serve`` holds connections: nobody keeps a socket, a file descriptor or memory for free.

- A connection must finish the headers of each request within ``HEADER_TIMEOUT_S`` of opening (or of
  the request's first byte): idle sockets and slowloris trickles are closed. Between requests,
  uvicorn's keep-alive timeout closes idle keep-alive connections.
- At most ``MAX_CONCURRENCY`` connections and requests at once; past that, new requests get 503.
- Bodies are bounded in size and time, and read only for callers allowed to send them
  (``guara.http.bodies``).

A reverse proxy in front should still add what one process cannot: per-client connection and request
rate limits, and TLS (see the README's security section).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

if TYPE_CHECKING:
    from guara.context import AppContext

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_TIMEOUT_S = 5
MAX_CONCURRENCY = 1000


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with one deadline from a request's first byte (or the connection's
    opening) to the end of its headers; bytes trickling in do not extend it."""

    header_timeout_s = HEADER_TIMEOUT_S
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def server_config(app: Any, *, host: str, port: int, log_level: str, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration ``guara serve`` runs with (``overrides`` for tests)."""
    settings: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "http": HeaderDeadlineProtocol,
        "timeout_keep_alive": KEEP_ALIVE_TIMEOUT_S,
        "limit_concurrency": MAX_CONCURRENCY,
        "proxy_headers": False,
        "log_config": None,
        **overrides,
    }
    return uvicorn.Config(app, **settings)


class _ServerBeside(uvicorn.Server):
    """A second server in the main server's event loop; the main one owns the process's signals and
    stops this one when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listening_socket(host: str, port: int) -> socket.socket:
    """Bound with SO_REUSEPORT: every worker process of ``guara serve --workers N`` listens on the same
    address, and any of them answers for all (the metrics are shared through files)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


@contextlib.asynccontextmanager
async def serving_beside(app: Any, *, host: str, port: int) -> AsyncIterator[None]:
    """Serve ``app`` on host:port for as long as the context is open (an OSError when it cannot bind)."""
    sock = _listening_socket(host, port)
    config = server_config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = _ServerBeside(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="guara-metrics-server")
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()


def run_server(context: AppContext, *, host: str, port: int, log_level: str, workers: int = 1) -> None:
    """``guara serve``: this process serves, or ``workers`` processes share the address (each with its
    own application context, built from the same settings; this one only supervises them)."""
    from guara.app import create_app

    if workers == 1:
        app = create_app(context, metrics_address=context.settings.metrics_addr)
        # Everything loaded so far lives for the whole process: keep the collector from rescanning it.
        gc.freeze()
        uvicorn.Server(server_config(app, host=host, port=port, log_level=log_level)).run()
        return
    factory = "guara.app:app_from_settings"
    config = server_config(factory, host=host, port=port, log_level=log_level, factory=True, workers=workers)
    Multiprocess(config, sockets=[config.bind_socket()]).run()
