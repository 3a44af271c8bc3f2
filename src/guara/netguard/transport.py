"""The guarded httpx transport: URL checks first, then a connection pool dialing through the guard."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterator

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


# httpcore's exceptions and the httpx ones callers expect, most specific first (httpx's own mapping).
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """The one place httpcore's exceptions become httpx's; the guard's own errors pass unchanged."""
    try:
        yield
    except tuple(source for source, _target in _EXCEPTIONS) as exc:
        raise _translated(exc) from exc


def _translated(exc: Exception) -> httpx.TransportError:
    target = next(to for from_, to in _EXCEPTIONS if isinstance(exc, from_))
    return target(str(exc))


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _as_httpx_errors():
                await close()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore connection pool whose network backend is the guard.

    Built from public httpcore and httpx interfaces only. HTTP/1.1 only; never reads proxy settings
    from the environment (and httpx clients only mount environment proxies when no transport is given).
    Clients are still built with ``trust_env=False``, which also keeps ``~/.netrc`` credentials off
    outbound requests.
    """

    def __init__(self, backend: GuardedBackend, *, ssl_context: ssl.SSLContext) -> None:
        self.backend = backend
        limits = httpx.Limits()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        validate_url(request.url)
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            answer = await self._pool.handle_async_request(core_request)
        assert isinstance(answer.stream, AsyncIterable)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_ResponseStream(answer.stream),
            extensions=answer.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def guarded_transport(policy: GuardPolicy, *, ssl_context: ssl.SSLContext) -> httpx.AsyncBaseTransport:
    """An httpx transport whose every connection goes through the network guard.

    Use with ``httpx.AsyncClient(transport=..., trust_env=False)``.
    """
    return GuardedTransport(GuardedBackend(policy), ssl_context=ssl_context)
