"""The one host rule: a table per case, for user input and for URLs a registry sends."""

from __future__ import annotations

import httpx
import pytest

from guara.registry.hosts import authority_problem, host_problem, port_problem, url_problem

ACCEPTED = [
    "ghcr.io",
    "GHCR.IO",
    "localhost",
    "registry-1.docker.io",
    "registry-1.docker.io.",  # one trailing dot: the fully qualified spelling
    "203.0.113.7",
    "0.0.0.0",
    "255.255.255.255",
    "1.2.3.example",  # numeric labels are fine when the last one is not
    "1e3.example",
    "ab--cd.example",  # no IDNA label: plain LDH rules
    "xn--bcher-kva.example",
    "XN--BCHER-KVA.example",
    "registry.xn--55qx5d",
    "a" * 63 + ".example",
    "::1",
    "2001:db8::1",
]

REFUSED = [
    ("", "empty"),
    ("0177.0.0.1", "not a valid IPv4 address"),
    ("127.000.000.001", "not a valid IPv4 address"),
    ("999.1.1.1", "not a valid IPv4 address"),
    ("256.256.256.256", "not a valid IPv4 address"),
    ("1.2.3.04", "not a valid IPv4 address"),
    ("127.1", "not a valid IPv4 address"),
    ("2130706433", "not a valid IPv4 address"),
    ("0x7f000001", "not a valid IPv4 address"),
    ("0x7f.0.0.1", "not a valid IPv4 address"),
    ("example.0x", "not a valid IPv4 address"),
    ("example.123", "not a valid IPv4 address"),
    ("1.2.3.4.", "not a valid IPv4 address"),
    ("1.2.3.4.5", "not a valid IPv4 address"),
    ("xn--zz", "internationalized"),
    ("xn--zz.example", "internationalized"),
    ("a.xn--0", "internationalized"),
    ("xn--bcher-kva.ab--c", "internationalized"),  # httpx decodes the whole name when it starts xn--
    ("xn--ls8h.example", "internationalized"),  # punycode for an emoji: not IDNA2008
    ("xn--a-.example", "not a valid host name"),
    ("-bad.example", "not a valid host name"),
    ("bad-.example", "not a valid host name"),
    ("ex_ample.com", "not a valid host name"),
    ("dock..er", "not a valid host name"),
    ("bücher.example", "not a valid host name"),
    ("a%2e.example", "not a valid host name"),
    ("a" * 64 + ".example", "longer than 63"),
    (("a" * 60 + ".") * 5, "longer than 253"),
    ("fe80::1%eth0", "zone"),
    ("::::", "not a valid IPv6 address"),
]


@pytest.mark.parametrize("host", ACCEPTED)
def test_accepted_hosts(host: str) -> None:
    assert host_problem(host) is None


@pytest.mark.parametrize(("host", "reason"), REFUSED)
def test_refused_hosts_say_why(host: str, reason: str) -> None:
    problem = host_problem(host)
    assert problem is not None
    assert reason in problem


def test_an_ipv4_problem_says_how_to_write_one() -> None:
    assert host_problem("0177.0.0.1") == (
        "'0177.0.0.1' is not a valid IPv4 address: write four numbers from 0 to 255 without leading "
        "zeros, e.g. 203.0.113.7"
    )


@pytest.mark.parametrize("port", [0, -1, 65536, 99999, 10**30])
def test_ports_out_of_range(port: int) -> None:
    problem = port_problem(port)
    assert problem is not None and "1 to 65535" in problem


@pytest.mark.parametrize("port", [1, 443, 5000, 65535])
def test_ports_in_range(port: int) -> None:
    assert port_problem(port) is None


@pytest.mark.parametrize(
    ("authority", "ok"),
    [
        ("ghcr.io", True),
        ("ghcr.io:5000", True),
        ("[::1]:5000", True),
        ("[2001:db8::1]", True),
        ("ghcr.io:0", False),
        ("ghcr.io:65536", False),
        ("ghcr.io:", False),
        ("ghcr.io:+80", False),
        ("[::1", False),
        ("[::1]x", False),
        ("[fe80::1%eth0]:5000", False),
        ("0177.0.0.1:5000", False),
    ],
)
def test_authorities(authority: str, ok: bool) -> None:
    assert (authority_problem(authority) is None) is ok


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://auth.example.com/token", None),
        ("https://[2001:db8::1]:8443/token", None),
        ("https://bücher.example/token", None),  # httpx encodes it to a valid A-label
        ("https://auth.example.com:99999/token", "1 to 65535"),
        ("https://auth.example.com:65536/token", "1 to 65535"),
        ("https://auth.example.com:0/token", "1 to 65535"),
        ("https://127.1/token", "IPv4"),
        ("https://a.xn--zz/token", "internationalized"),
        ("https://xn--a-.example/token", "not a valid host name"),
    ],
)
def test_urls_a_registry_sends(url: str, reason: str | None) -> None:
    problem = url_problem(httpx.URL(url))
    if reason is None:
        assert problem is None
    else:
        assert problem is not None and reason in problem
