"""The guard's judgement: one function, ``classify``, decides each address with a reason."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from .addresses import IPAddress, IPNetwork, deny_rule, strip_scope
from .resolver import Resolver

OPERATOR_EXEMPTION = "operator exemption"
OWN_INTERFACE = "this host's own interface"
PUBLIC = "public address"
METADATA_NAME = "cloud metadata service name"

# Names refused whatever they resolve to (compared lower-case, without a trailing dot).
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.amazonaws.com"})


@dataclass(frozen=True)
class GuardPolicy:
    """What the guard lets through.

    ``allow`` lists operator-exempted networks (GUARA_SSRF_ALLOW): an exemption wins over every rule
    except the cloud metadata names. The default exempts nothing. ``resolver`` None means the system
    resolver. ``refuse_own_interfaces`` also refuses the addresses of this host's interfaces.
    """

    allow: tuple[IPNetwork, ...] = ()
    resolver: Resolver | None = None
    refuse_own_interfaces: bool = True


@dataclass(frozen=True)
class Decision:
    """The verdict on one address, with a reason people can read."""

    allowed: bool
    reason: str
    address: IPAddress
    # The reason as a noun phrase for messages, e.g. "a private network address (RFC 1918)".
    description: str = ""


def parse_allow_list(value: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse operator exemptions: "127.0.0.0/8, ::1/128" or an iterable of CIDRs.

    Items are separated by commas or whitespace; a bare address means a single host. Raises
    ValueError naming the bad item (host bits set, e.g. "10.1.2.3/8", count as bad).
    """
    items = (
        value.replace(",", " ").split()
        if isinstance(value, str)
        else [part for item in value for part in item.replace(",", " ").split()]
    )
    networks: list[IPNetwork] = []
    for item in items:
        try:
            network = ipaddress.ip_network(item, strict=True)
        except ValueError as exc:
            raise ValueError(f"not a CIDR network: {item!r} ({exc})") from exc
        if network not in networks:
            networks.append(network)
    return tuple(networks)


_INTERFACE_CACHE_SECONDS = 5.0
_interface_lock = threading.Lock()
_interface_cache: tuple[float, frozenset[IPAddress]] | None = None


def own_interface_addresses() -> frozenset[IPAddress]:
    """Addresses bound to this host's interfaces (psutil), cached for a few seconds."""
    global _interface_cache
    now = time.monotonic()
    with _interface_lock:
        if _interface_cache is not None and now - _interface_cache[0] < _INTERFACE_CACHE_SECONDS:
            return _interface_cache[1]
        found: set[IPAddress] = set()
        for entries in psutil.net_if_addrs().values():
            for entry in entries:
                try:
                    found.add(strip_scope(ipaddress.ip_address(entry.address)))
                except ValueError:
                    continue  # MAC addresses (AF_PACKET/AF_LINK) and the like
        _interface_cache = (now, frozenset(found))
        return _interface_cache[1]


def _is_exempt(address: IPAddress, allow: Iterable[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in allow)


def classify(address: IPAddress, policy: GuardPolicy) -> Decision:
    """Judge one address, rules in a fixed order: exemption, own interface, deny list, public."""
    bare = strip_scope(address)
    if _is_exempt(bare, policy.allow):
        return Decision(True, OPERATOR_EXEMPTION, address, "an operator-exempted address")
    rule = deny_rule(bare)
    if rule is not None:
        return Decision(False, rule.reason, address, rule.description)
    if policy.refuse_own_interfaces and bare in own_interface_addresses():
        return Decision(False, OWN_INTERFACE, address, "an address of this host's own interfaces")
    return Decision(True, PUBLIC, address, "a public address")
