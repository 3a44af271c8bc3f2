"""A thin layer over the network guard's transport: scheme policy, body caps, the shared deadline.

It opens no socket itself; every connection is made by the wrapped ``guarded_transport``. Being the
last hop before the wire, it sees every request httpx sends, redirects and token requests included,
so the rules hold without special cases:

- only ``https`` (``http`` when explicitly allowed), checked again on each redirect hop;
- the host and port of each hop follow the rule user input follows (``hosts.url_problem``): a
  redirect to port 99999 or to a numeric host that is no dotted quad never reaches a socket;
- ``Accept-Encoding: identity`` and no decoding: a capped compressed body cannot expand in memory;
- every response body is capped (64 KiB unless the request asks for more via ``BODY_LIMIT``);
- every request's timeouts are what is left of the shared deadline;
- a request whose body carries a secret (``SECRET_BODY_ORIGIN``) goes to that origin only: httpx
  strips ``Authorization`` on a cross-origin redirect, but a 307/308 would replay the body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from .deadline import Deadline
from .errors import InsecureURLRefused, ProtocolViolation, ResponseTooLarge
from .hosts import url_problem

# Request extension: the body cap, in bytes, for this request's response.
BODY_LIMIT = "guara.body_limit"
DEFAULT_BODY_LIMIT = 64 * 1024
# Request extension: the (scheme, host, port) a secret-bearing body may be sent to, and nowhere else.
SECRET_BODY_ORIGIN = "guara.secret_body_origin"  # noqa: S105  (an extension name)


def origin_of(url: httpx.URL) -> tuple[str, str, int]:
    port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
    return url.scheme, url.host.lower(), port


class BoundedTransport(httpx.AsyncBaseTransport):
    """Wraps ``inner`` (the guarded transport): see the module docstring."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, *, deadline: Deadline, allow_http: bool = False
    ) -> None:
        self._inner = inner
        self._deadline = deadline
        self._allow_http = allow_http

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        scheme = request.url.scheme
        if scheme != "https" and not (scheme == "http" and self._allow_http):
            raise InsecureURLRefused(
                f"refusing {scheme}://{request.url.netloc.decode('ascii', 'replace')}: only https is allowed"
            )
        problem = url_problem(request.url)
        if problem is not None:
            raise ProtocolViolation(f"a redirect points to an invalid address: {problem}")
        bound = request.extensions.get(SECRET_BODY_ORIGIN)
        if bound is not None and origin_of(request.url) != bound:
            raise InsecureURLRefused(
                f"the token server redirected a request carrying credentials to {request.url.host}; "
                "refusing to send them to another host"
            )
        request.headers["Accept-Encoding"] = "identity"
        timeout = self._deadline.httpx_timeout()
        request.extensions["timeout"] = timeout.as_dict()
        limit = int(request.extensions.get(BODY_LIMIT, DEFAULT_BODY_LIMIT))
        response = await self._inner.handle_async_request(request)
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit and request.method != "HEAD":
            await response.aclose()
            raise ResponseTooLarge(
                f"{request.url.host} announced a {int(declared)}-byte answer; the limit is {limit} bytes"
            )
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        # httpx decodes per Content-Encoding; with the header gone, the bytes stay as sent and capped.
        headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"content-encoding"]
        assert isinstance(response.stream, httpx.AsyncByteStream)
        stream = _CappedStream(response.stream, limit=limit, host=request.url.host, encoding=encoding)
        return httpx.Response(
            status_code=response.status_code,
            headers=headers,
            stream=stream,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, *, limit: int, host: str, encoding: str) -> None:
        self._inner = inner
        self._limit = limit
        self._host = host
        self._encoding = encoding

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self._inner:
            if not chunk:
                continue
            if self._encoding not in ("", "identity"):
                raise ProtocolViolation(
                    f"{self._host} sent a {self._encoding}-encoded body although identity was requested"
                )
            received += len(chunk)
            if received > self._limit:
                raise ResponseTooLarge(f"{self._host} sent more than {self._limit} bytes; stopped reading")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
