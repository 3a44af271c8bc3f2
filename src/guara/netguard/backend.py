"""An httpcore network backend that resolves once, judges every answer, and dials a checked address.

httpcore hands ``connect_tcp`` the origin's host name and later calls ``start_tls`` on the returned
stream with that same name, so the socket is pinned to an address we checked while SNI and
certificate verification still use the name.
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
from collections.abc import Iterable

import anyio
import httpcore

from .addresses import IPAddress, parse_host_literal
from .errors import DestinationBlocked, DisallowedURL, ResolutionFailed
from .policy import METADATA_NAME, METADATA_NAMES, GuardPolicy, classify
from .resolver import Resolver, SystemResolver

logger = logging.getLogger("guara.netguard")

LOCALHOST = ipaddress.IPv4Address("127.0.0.1")
MIN_PORT, MAX_PORT = 1, 65535

# True while the guard dials an address it has checked; the test suite's socket audit reads it to
# prove every outbound socket went through here.
_GUARDED_DIAL: contextvars.ContextVar[bool] = contextvars.ContextVar("guara_netguard_dial", default=False)


def inside_guarded_dial() -> bool:
    """Whether the current context is the guard dialing a checked address."""
    return _GUARDED_DIAL.get()


def check_port(port: int) -> None:
    """Refuse a port outside 1-65535: getaddrinfo silently wraps such a port (99999 becomes 34463)
    and connect raises OverflowError."""
    if not MIN_PORT <= port <= MAX_PORT:
        shown = str(port) if abs(port) < 10**6 else "this large"
        raise DisallowedURL(f"port {shown} is not a TCP port (1 to 65535)")


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, classify every answer, then dial one of the checked addresses.

    ``dialer`` receives only IP literals; it defaults to httpcore's own anyio backend (tests may pass
    a recording double to prove which address is dialed without sending traffic).
    """

    def __init__(self, policy: GuardPolicy, *, dialer: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._policy = policy
        self._resolver: Resolver = policy.resolver if policy.resolver is not None else SystemResolver()
        self._dialer: httpcore.AsyncNetworkBackend = dialer if dialer is not None else httpcore.AnyIOBackend()

    async def checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` stands for, all of them allowed; raises a NetGuardError otherwise."""
        name = host.rstrip(".").lower()
        if name in METADATA_NAMES:
            raise DestinationBlocked(host, None, METADATA_NAME, description="a cloud metadata service name")
        literal = parse_host_literal(host)
        if literal is not None:
            addresses = [literal]
        elif name == "localhost" or name.endswith(".localhost"):
            # RFC 6761: these names are loopback, whatever a resolver (or /etc/hosts) says.
            addresses = [LOCALHOST]
        else:
            try:
                addresses = await self._resolver.resolve(host, port)
            except OSError as exc:
                raise ResolutionFailed(host, exc.strerror or str(exc) or type(exc).__name__) from exc
            except (ValueError, OverflowError) as exc:  # ValueError includes the idna codec's UnicodeError
                detail = f"not a name the resolver accepts ({type(exc).__name__})"
                raise ResolutionFailed(host, detail) from exc
            if not addresses:
                raise ResolutionFailed(host, "no addresses in the answer")
        unique = list(dict.fromkeys(addresses))
        for address in unique:
            decision = classify(address, self._policy)
            if not decision.allowed:
                logger.info("netguard refused %s -> %s: %s", host, address, decision.reason)
                raise DestinationBlocked(
                    host, str(address), decision.reason, description=decision.description
                )
        return unique

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        check_port(port)
        # One deadline for resolution and dialing: httpcore's connect timeout.
        deadline = None if timeout is None else anyio.current_time() + timeout
        try:
            with anyio.fail_after(timeout):
                addresses = await self.checked_addresses(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc

        last_error: httpcore.ConnectError | None = None
        for address in addresses:
            remaining = None if deadline is None else max(deadline - anyio.current_time(), 0.0)
            token = _GUARDED_DIAL.set(True)
            try:
                return await self._dialer.connect_tcp(
                    str(address),
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last_error = exc  # try the next checked address; a timeout ends the attempt
            except (ValueError, OverflowError) as exc:
                # Socket layers raise these for arguments they refuse; to httpcore it is a failed connect.
                last_error = httpcore.ConnectError(
                    f"could not connect to {address} port {port} ({type(exc).__name__})"
                )
                last_error.__cause__ = exc
            finally:
                _GUARDED_DIAL.reset(token)
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationBlocked(path, None, "unix socket", description="a unix socket (only TCP is allowed)")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
