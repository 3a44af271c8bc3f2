"""The deny list: which IP addresses are not publicly routable, and why.

Built from the IANA IPv4/IPv6 special-purpose registries (see the reference notes in
docs/network-guard.md), not from Python's ``is_global``/``is_private``, which call several of these
ranges global. IPv6 is allowed only inside 2000::/3, minus the listed ranges. Every IPv6 form that
embeds an IPv4 address (mapped, compatible, SIIT, NAT64, 6to4, Teredo) is denied outright, so an
IPv4 rule can never be bypassed through IPv6.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class DenyRule:
    """One denied range, with the reason shown to people."""

    network: IPNetwork
    reason: str
    article: str = "a"

    @property
    def description(self) -> str:
        """The reason as a noun phrase, e.g. "a private network address (RFC 1918)"."""
        name, paren, rest = self.reason.partition(" (")
        return f"{self.article} {name} address" + (f" ({rest}" if paren else "")


def _rule(cidr: str, reason: str, article: str = "a") -> DenyRule:
    return DenyRule(ipaddress.ip_network(cidr), reason, article)


# Order matters only for the reason reported: specific ranges come before ranges containing them.
IPV4_DENY: tuple[DenyRule, ...] = (
    _rule("0.0.0.0/8", "this-network (RFC 1122)"),
    _rule("10.0.0.0/8", "private network (RFC 1918)"),
    _rule("100.64.0.0/10", "carrier-grade NAT"),
    _rule("127.0.0.0/8", "loopback"),
    _rule("169.254.0.0/16", "link-local (cloud metadata lives here)"),
    _rule("172.16.0.0/12", "private network (RFC 1918)"),
    _rule("192.0.0.0/24", "IETF protocol assignment (RFC 6890)", "an"),
    _rule("192.0.2.0/24", "documentation (TEST-NET-1)"),
    _rule("192.31.196.0/24", "AS112 (RFC 7535)", "an"),
    _rule("192.52.193.0/24", "AMT relay (RFC 7450)", "an"),
    _rule("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    _rule("192.168.0.0/16", "private network (RFC 1918)"),
    _rule("192.175.48.0/24", "AS112 direct delegation (RFC 7534)", "an"),
    _rule("198.18.0.0/15", "benchmarking (RFC 2544)"),
    _rule("198.51.100.0/24", "documentation (TEST-NET-2)"),
    _rule("203.0.113.0/24", "documentation (TEST-NET-3)"),
    _rule("224.0.0.0/4", "multicast"),
    _rule("255.255.255.255/32", "limited broadcast"),
    _rule("240.0.0.0/4", "reserved (240.0.0.0/4)"),
)

IPV6_DENY: tuple[DenyRule, ...] = (
    _rule("::/128", "unspecified", "an"),
    _rule("::1/128", "loopback"),
    _rule("::ffff:0:0/96", "IPv4-mapped IPv6", "an"),
    _rule("::ffff:0:0:0/96", "IPv4-translated IPv6 (RFC 2765)", "an"),
    _rule("::/96", "IPv4-compatible IPv6", "an"),
    _rule("64:ff9b::/96", "NAT64 IPv4-embedded IPv6 (RFC 6052)"),
    _rule("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"),
    _rule("100::/64", "discard-only (RFC 6666)"),
    _rule("2001::/32", "Teredo IPv4-embedded IPv6 (RFC 4380)"),
    _rule("2001::/23", "IETF protocol assignment (RFC 2928)", "an"),
    _rule("2001:db8::/32", "documentation (RFC 3849)"),
    _rule("2002::/16", "6to4 IPv4-embedded IPv6 (RFC 3056)"),
    _rule("2620:4f:8000::/48", "AS112-v6 (RFC 7534)", "an"),
    _rule("3fff::/20", "documentation (RFC 9637)"),
    _rule("5f00::/16", "SRv6 SID (RFC 9602)", "an"),
    _rule("fc00::/7", "unique local (RFC 4193)"),
    _rule("fe80::/10", "link-local"),
    _rule("fec0::/10", "deprecated site-local (RFC 3879)"),
    _rule("ff00::/8", "multicast"),
)

IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
IPV6_OUTSIDE_GLOBAL_UNICAST = DenyRule(IPV6_GLOBAL_UNICAST, "non-global-unicast IPv6 (outside 2000::/3)")


def strip_scope(address: IPAddress) -> IPAddress:
    """The address without an IPv6 zone id ("fe80::1%eth0" -> "fe80::1"); zones never change the rule."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return ipaddress.IPv6Address(address.packed)
    return address


def deny_rule(address: IPAddress) -> DenyRule | None:
    """The deny rule that matches ``address``, or None when it is publicly routable."""
    address = strip_scope(address)
    if isinstance(address, ipaddress.IPv4Address):
        return next((rule for rule in IPV4_DENY if address in rule.network), None)
    for rule in IPV6_DENY:
        if address in rule.network:
            return rule
    if address not in IPV6_GLOBAL_UNICAST:
        return IPV6_OUTSIDE_GLOBAL_UNICAST
    return None


def parse_ip(text: str) -> IPAddress:
    """Parse an IP address written canonically, optionally in brackets and with an IPv6 zone id.

    Raises ValueError on anything else (host names, CIDRs, empty text).
    """
    candidate = text.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    return ipaddress.ip_address(candidate)


# Legacy IPv4 spellings that the C library's inet_aton (hence getaddrinfo) accepts:
# "127.1", "2130706433", "0x7f000001", "0177.0.0.1". Only digits, hex letters, 'x' and dots.
_LEGACY_IPV4 = re.compile(r"[0-9a-fA-FxX.]+")


def parse_host_literal(host: str) -> IPAddress | None:
    """The address a host string denotes by itself, without DNS; None when it is a name.

    Understands canonical IPv4/IPv6 (with brackets or a zone id) and the legacy IPv4 spellings the
    system resolver would turn into an address without asking DNS, so both paths agree.
    """
    try:
        return parse_ip(host)
    except ValueError:
        pass
    # One trailing dot ("127.0.0.1.") is a fully qualified spelling of the same number, as browsers read it.
    numeric = host[:-1] if host.endswith(".") else host
    if _LEGACY_IPV4.fullmatch(numeric):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(numeric))
        except OSError:
            return None
    return None


def is_public_address(ip: str) -> bool:
    """True when ``ip`` is publicly routable under the deny list; pure (no exemptions, no I/O).

    Accepts "10.0.0.1", "::ffff:127.0.0.1", "[::1]", "fe80::1%eth0". Raises ValueError when the text
    is not an IP address.
    """
    return deny_rule(parse_ip(ip)) is None
