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
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
