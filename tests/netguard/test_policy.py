"""classify() and the policy: exemptions, own interfaces, allow-list parsing."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress

import psutil
import pytest

from guara.netguard import Decision, GuardPolicy, classify, parse_allow_list
from guara.netguard import policy as policy_module


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_parse_allow_list_from_text_and_iterables() -> None:
    expected = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert parse_allow_list("127.0.0.0/8, ::1/128") == expected
    assert parse_allow_list(" 127.0.0.0/8,::1/128 ,") == expected
    assert parse_allow_list(["127.0.0.0/8", "::1/128", "127.0.0.0/8"]) == expected
    assert parse_allow_list("") == ()
    assert parse_allow_list("10.0.0.7") == (ipaddress.ip_network("10.0.0.7/32"),)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "10.1.2.3/8", "localhost", "127.0.0.0/8, nope", "::1/129"])
def test_parse_allow_list_rejects_bad_cidrs(bad: str) -> None:
    with pytest.raises(ValueError, match="not a CIDR network"):
        parse_allow_list(bad)


def test_default_policy_exempts_nothing() -> None:
    policy = GuardPolicy()
    assert policy.allow == ()
    assert policy.resolver is None
    assert policy.refuse_own_interfaces is True
    decision = classify(ip("127.0.0.1"), policy)
    assert decision == Decision(False, "loopback", ip("127.0.0.1"), "a loopback address")


def test_decisions_are_frozen() -> None:
    decision = classify(ip("8.8.8.8"), GuardPolicy())
    assert decision.allowed is True
    assert decision.reason == "public address"
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.allowed = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("address", "allow", "allowed", "reason"),
    [
        ("127.0.0.1", "127.0.0.0/8", True, "operator exemption"),
        ("127.0.0.2", "127.0.0.1/32", False, "loopback"),
        ("10.0.0.5", "10.0.0.0/24", True, "operator exemption"),
        ("10.0.1.5", "10.0.0.0/24", False, "private network (RFC 1918)"),
        ("169.254.169.254", "169.254.0.0/16", True, "operator exemption"),
        # An IPv4 exemption does not leak into the IPv6 forms that embed it.
        ("::ffff:127.0.0.1", "127.0.0.0/8", False, "IPv4-mapped IPv6"),
        ("::1", "127.0.0.0/8", False, "loopback"),
        ("::1", "::1/128", True, "operator exemption"),
        ("fe80::1%eth0", "fe80::/10", True, "operator exemption"),
        ("8.8.8.8", "", True, "public address"),
        ("100.64.0.1", "", False, "carrier-grade NAT"),
    ],
)
def test_classify_applies_exemptions_first(address: str, allow: str, allowed: bool, reason: str) -> None:
    decision = classify(ip(address), GuardPolicy(allow=parse_allow_list(allow)))
    assert (decision.allowed, decision.reason) == (allowed, reason)
    assert decision.address == ip(address)


def test_own_interface_addresses_come_from_psutil_and_are_refused() -> None:
    reported = set()
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            with contextlib.suppress(ValueError):  # MAC addresses are listed too
                reported.add(ipaddress.ip_address(entry.address.split("%")[0]))
    own = policy_module.own_interface_addresses()
    assert ipaddress.ip_address("127.0.0.1") in own
    assert reported <= own
    for address in own:
        assert classify(address, GuardPolicy()).allowed is False


def test_a_public_address_on_our_own_interface_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A host with a public interface address must not be reachable through itself.
    monkeypatch.setattr(policy_module, "own_interface_addresses", lambda: frozenset({ip("203.0.114.7")}))
    refused = classify(ip("203.0.114.7"), GuardPolicy())
    assert (refused.allowed, refused.reason) == (False, "this host's own interface")
    assert classify(ip("203.0.114.7"), GuardPolicy(refuse_own_interfaces=False)).allowed is True
    exempt = classify(ip("203.0.114.7"), GuardPolicy(allow=parse_allow_list("203.0.114.0/24")))
    assert (exempt.allowed, exempt.reason) == (True, "operator exemption")
    assert classify(ip("203.0.114.8"), GuardPolicy()).allowed is True
