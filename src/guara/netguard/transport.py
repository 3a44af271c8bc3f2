"""The guarded httpx transport: URL checks first, then a connection pool dialing through the guard."""

from __future__ import annotations

import ssl

import httpcore
import httpx

from .backend import GuardedBackend, check_port
from .errors import DisallowedURL
from .policy import GuardPolicy

ALLOWED_SCHEMES = frozenset({"http", "https"})


def validate_url(url: httpx.URL) -> None:
    """Refuse URLs the guard never fetches; ``url`` was parsed by httpx, the parser that will be used."""
    scheme = url.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = repr(scheme) if scheme else "a URL without a scheme"
        raise DisallowedURL(f"only http and https URLs are allowed, not {shown}")
    if not url.host:
        raise DisallowedURL("the URL has no host")
    if url.userinfo:
        raise DisallowedURL(f"URLs with embedded credentials are refused (host {url.host})")
    if url.port is not None:
        check_port(url.port)


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, with its pool's network backend replaced by the guard.

    Never reads proxy settings from the environment (and httpx clients only mount environment
    proxies when no transport is given). Clients are still built with ``trust_env=False``, which also
    keeps ``~/.netrc`` credentials off outbound requests.
    """

    def __init__(self, backend: GuardedBackend, *, ssl_context: ssl.SSLContext) -> None:
        self.backend = backend
        self._inner = httpx.AsyncHTTPTransport(verify=ssl_context, trust_env=False, proxy=None)
        limits = httpx.Limits()
        # httpx has no public hook for the network backend; swap the pool it built for one that dials
        # through the guard, with the same settings httpx would use.
        self._inner._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=self.backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        validate_url(request.url)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def guarded_transport(policy: GuardPolicy, *, ssl_context: ssl.SSLContext) -> httpx.AsyncBaseTransport:
    """An httpx transport whose every connection goes through the network guard.

    Use with ``httpx.AsyncClient(transport=..., trust_env=False)``.
    """
    return GuardedTransport(GuardedBackend(policy), ssl_context=ssl_context)
