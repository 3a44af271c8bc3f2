"""Readiness probes of a container's published port.

They dial the engine's own published port (an IP literal the engine reported, normally on loopback),
never a host a user named, so they do not go through the network guard: there is no name to resolve
and no address to choose. HTTP probes ignore proxy variables and never follow a redirect.

A probe returns None when the container serves, else a short reason for the failure message.
"""

from __future__ import annotations

import ipaddress
import os

import anyio
import httpx

# A connection to the published port that stays open this long (or that the server speaks on first)
# counts as listening: dockerd's docker-proxy closes within a millisecond when nothing listens.
TCP_SETTLE_S = 0.3
PROBE_TIMEOUT_S = 2.0
_HELLO = b"HEAD / HTTP/1.0\r\n\r\n"


def probe_address(url: str) -> tuple[str, int]:
    """The IP literal and port of a published address (``http://127.0.0.1:32768``)."""
    parsed = httpx.URL(url)
    if parsed.scheme != "http" or parsed.port is None:
        raise ValueError(f"not a published address: {url!r}")
    ipaddress.ip_address(parsed.host)  # ValueError for a name: nothing is ever resolved here
    return parsed.host, parsed.port


def health_url(base: str, path: str) -> httpx.URL:
    """``base`` + ``path``, where ``path`` is an absolute path of printable ASCII that cannot change
    the host."""
    if not path.startswith("/") or len(path) > 1024 or not all(" " < ch < "\x7f" for ch in path):
        raise ValueError("health_path must be an absolute path of printable ASCII (no spaces)")
    url = httpx.URL(base + path)
    expected = httpx.URL(base)
    if (url.scheme, url.host, url.port) != (expected.scheme, expected.host, expected.port):
        raise ValueError("health_path must not change the host")
    return url


async def probe_http(client: httpx.AsyncClient, url: httpx.URL, *, timeout_s: float) -> str | None:
    """None when ``GET url`` answers a status below 400 (the body is not read)."""
    path = url.raw_path.decode("ascii")
    try:
        async with client.stream("GET", url, timeout=timeout_s) as response:
            if response.status_code < 400:
                return None
            return f"GET {path} answered {response.status_code}"
    except httpx.HTTPError as exc:  # an outcome of the probe: the app is not serving yet
        return f"GET {path}: {type(exc).__name__}"


async def probe_tcp(host: str, port: int, *, timeout_s: float) -> str | None:
    """None when a connection to ``host:port`` is accepted and the far side answers, or neither closes
    nor resets it within ``TCP_SETTLE_S``.

    An accept alone proves nothing on dockerd: docker-proxy accepts every connection on the host
    port, dials the container, and closes the accepted connection at once when nothing listens
    there. Podman's port forwarding (netavark's DNAT) refuses the connection instead. The probe says
    something first (a ``HEAD`` request: most servers, HTTP or not, answer it at once), so a server
    that answers is ready without waiting out the settle time; a silent one still passes after it."""
    try:
        with anyio.fail_after(timeout_s):
            stream = await anyio.connect_tcp(host, port)
    except TimeoutError:
        return f"connecting to port {port} timed out"
    except OSError as exc:
        return f"port {port}: {_reason(exc)}"
    async with stream:
        try:
            with anyio.fail_after(TCP_SETTLE_S):
                await stream.send(_HELLO)
                await stream.receive(1)
        except TimeoutError:
            return None  # held open: something listens behind the port
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return f"port {port} accepted the connection and closed it at once (nothing listens)"
    return None  # the server answered


def _reason(exc: BaseException) -> str:
    """The system's words for a failed connect ("Connection refused"): anyio wraps the attempt's
    error in its own "All connection attempts failed"."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, OSError) and current.errno:
            return os.strerror(current.errno)  # asyncio puts its own text in strerror
        current = current.__cause__ or current.__context__
    return str(exc) or type(exc).__name__
