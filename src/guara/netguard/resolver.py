"""Name resolution behind a tiny interface, so tests can swap in a double (smokescreen's Resolver)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Protocol

import anyio

from .addresses import IPAddress
from .errors import ResolutionFailed


class Resolver(Protocol):
    """Turns a host name into its addresses.

    Return every A/AAAA answer. Raise ResolutionFailed (or OSError, e.g. socket.gaierror) when the
    name does not resolve; an empty list is treated as a failure too.
    """

    async def resolve(self, host: str, port: int) -> list[IPAddress]: ...


class SystemResolver:
    """The operating system's resolver, through anyio.getaddrinfo (runs in a worker thread)."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            answers = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ResolutionFailed(host, exc.strerror or "name does not resolve") from exc
        addresses: list[IPAddress] = []
        for family, _type, _proto, _canonname, sockaddr in answers:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = ipaddress.ip_address(str(sockaddr[0]))
            if address not in addresses:
                addresses.append(address)
        return addresses
