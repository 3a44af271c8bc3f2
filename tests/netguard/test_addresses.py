"""Pure table tests of the deny list against the reference (never connect anywhere)."""

from __future__ import annotations

import ipaddress

import pytest

from guara.netguard import is_public_address
from guara.netguard.addresses import deny_rule, parse_host_literal

# Transcribed from reference/network-guard.md, independently of the implementation's table.
REFERENCE_IPV4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
]
REFERENCE_IPV6 = [
    "2001::/23",
    "2001::/32",
    "2001:db8::/32",
    "2002::/16",
    "2620:4f:8000::/48",
    "3fff::/20",
    "5f00::/16",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "::/96",
    "::ffff:0:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
]
DENIED_NETWORKS = [ipaddress.ip_network(cidr) for cidr in REFERENCE_IPV4 + REFERENCE_IPV6]
GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")


def reference_denies(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address not in GLOBAL_UNICAST:
        return True
    return any(address.version == net.version and address in net for net in DENIED_NETWORKS)


def _edges() -> list[tuple[str, bool]]:
    cases: list[tuple[str, bool]] = []
    for network in DENIED_NETWORKS:
        first, last = network.network_address, network.broadcast_address
        cases += [(str(first), True), (str(last), True)]
        max_value = 2**network.max_prefixlen - 1
        for outside_value in (int(first) - 1, int(last) + 1):
            if 0 <= outside_value <= max_value:
                outside = (
                    ipaddress.ip_address(outside_value)
                    if network.version == 4
                    else ipaddress.IPv6Address(outside_value)
                )
                cases.append((str(outside), reference_denies(outside)))
    return cases


EDGES = _edges()


@pytest.mark.parametrize(("address", "denied"), EDGES, ids=[a for a, _ in EDGES])
def test_first_last_and_neighbours_of_every_reference_range(address: str, denied: bool) -> None:
    assert is_public_address(address) is (not denied)


def test_edge_table_covers_both_outcomes() -> None:
    # The neighbours just outside must include public addresses, or the table proves little.
    public_neighbours = {address for address, denied in EDGES if not denied}
    assert {
        "9.255.255.255",
        "100.63.255.255",
        "100.128.0.0",
        "2001:200::",
        "2001:db9::",
        "2003::",
    } <= public_neighbours
    assert len(EDGES) > 3 * len(DENIED_NETWORKS)


@pytest.mark.parametrize(
    "address",
    [
        # Python 3.11's is_global calls these global; the guard must not.
        "224.0.0.1",
        "ff02::1",
        "64:ff9b::7f00:1",
        "::7f00:1",
        "fec0::1",
        "192.88.99.1",
        "2002::1",
        "2002:7f00:1::",
        "3fff::1",
        "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
        # Reference samples.
        "127.0.0.1",
        "0.0.0.0",
        "::1",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:a9fe:a9fe",
        "fe80::1%eth0",
        "169.254.169.254",
        "100.64.0.1",
        "192.0.0.192",
        "198.18.0.1",
        "255.255.255.255",
        "[::1]",
        "::ffff:7f00:1",
        "::ffff:0:7f00:1",
        "64:ff9b:1::a9fe:a9fe",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "fd00:ec2::254",
        "fc00::1",
        "2001:db8::1",
        "5f00::1",
        "2620:4f:8000::1",
        "100::1",
        "::ffff:8.8.8.8",
        "1::1",
        "4000::1",
        "e000::1",
    ],
)
def test_denied_samples(address: str) -> None:
    assert is_public_address(address) is False


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "2001:4860:4860::8888",
        "2606:4700:4700::1111",
        "100.128.0.1",
        "100.63.255.254",
        "1.1.1.1",
        "2a00:1450:4001::1",
        "[2606:4700:4700::1111]",
        "2001:200::1",
        "3fff:1000::1",
    ],
)
def test_allowed_controls(address: str) -> None:
    assert is_public_address(address) is True


@pytest.mark.parametrize("text", ["localhost", "", "127.1", "10.0.0.0/8", "example.com", "1.2.3.4.5", "::g"])
def test_non_ip_text_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        is_public_address(text)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private network (RFC 1918)"),
        ("172.31.255.255", "private network (RFC 1918)"),
        ("192.168.1.1", "private network (RFC 1918)"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("::ffff:127.0.0.1", "IPv4-mapped IPv6"),
        ("2001::1", "Teredo IPv4-embedded IPv6 (RFC 4380)"),
        ("2001:1ff::1", "IETF protocol assignment (RFC 2928)"),
        ("255.255.255.255", "limited broadcast"),
        ("1::1", "non-global-unicast IPv6 (outside 2000::/3)"),
    ],
)
def test_reasons_are_readable(address: str, reason: str) -> None:
    rule = deny_rule(ipaddress.ip_address(address))
    assert rule is not None
    assert rule.reason == reason


def test_description_is_a_noun_phrase() -> None:
    rule = deny_rule(ipaddress.ip_address("10.0.0.5"))
    assert rule is not None
    assert rule.description == "a private network address (RFC 1918)"


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("fe80::1%25eth0", "fe80::1%25eth0"),
        ("[::1]", "::1"),
    ],
)
def test_host_literals_are_read_like_the_system_resolver(host: str, address: str) -> None:
    assert parse_host_literal(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["localhost", "registry.example.com", "deadbeef", "a.b", "1e100"])
def test_names_are_not_literals(host: str) -> None:
    assert parse_host_literal(host) is None
