"""Generated hostile hosts (numeric labels, xn-- labels, hyphens, unicode, IPv6, odd ports) through
every place a host enters the registry client: the reference parser, the Registry URL parser, the
realm check, and a real preflight whose realm or redirect points at them. Nothing may escape the
registry's own errors, and a preflight always ends as a PreflightResult.

Safety: the networked part runs against a fake registry on loopback, with a resolver double that
knows no name (no DNS query leaves) and a dialer that refuses anything but loopback (a generated
public address such as 8.8.8.8 is allowed by the guard, so the guard alone would dial it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

import anyio
import httpcore
import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from guara.registry import (
    InsecureURLRefused,
    InvalidReference,
    InvalidRegistry,
    PreflightCode,
    PreflightResult,
    UnsupportedChallenge,
    parse_image_reference,
    parse_registry,
    preflight,
)
from guara.registry.auth import check_realm
from guara.registry.hosts import authority_problem, url_problem
from tests.netguard.doubles import ScriptedResolver
from tests.registry.conftest import LOOPBACK_ONLY, Fakes
from tests.registry.fakes import FakeServer, Reply, Seen
from tests.socket_audit import SocketAudit

# -- generated hosts --

_numeric = st.one_of(
    st.text("0123456789", min_size=1, max_size=4),
    st.sampled_from(["0", "00", "04", "0177", "000", "255", "256", "999", "4294967295"]),
    st.text("0123456789abcdefABCDEFxXg", max_size=4).map(lambda digits: "0x" + digits),
)
_ldh = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_xn = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", max_size=10).map(lambda rest: "xn--" + rest)
_hyphens = st.sampled_from(["", "-", "a-", "-a", "a--b", "ab--cd", "xn--", "XN--BCHER-KVA", "a" * 64])
_unicode = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters='"\\'),
    min_size=1,
    max_size=6,
)
_label = st.one_of(_numeric, _ldh, _xn, _hyphens, _unicode)
_name = st.builds(
    lambda labels, dot: ".".join(labels) + dot,
    st.lists(_label, min_size=1, max_size=5),
    st.sampled_from(["", "", "", "."]),
)
_ipv6 = st.one_of(
    st.ip_addresses(v=6).map(lambda address: f"[{address}]"),
    st.text("0123456789abcdef:%.", max_size=12).map(lambda text: f"[{text}]"),
)
HOSTS = st.one_of(_name, st.ip_addresses(v=4).map(str), _ipv6)
_port = st.one_of(
    st.none(),
    st.integers(min_value=-2, max_value=10**6).map(str),
    st.sampled_from(["", "0", "65535", "65536", "99999", "+80", "0x50", "٣"]),
    st.text("0123456789", min_size=6, max_size=30),
)
AUTHORITIES = st.builds(lambda host, port: host if port is None else f"{host}:{port}", HOSTS, _port)

# The inputs of the issue, always tried on top of the generated ones.
NAMED = [
    "0177.0.0.1",
    "127.000.000.001",
    "999.1.1.1",
    "256.256.256.256",
    "1.2.3.04",
    "xn--zz",
    "xn--a-.example",
    "xn--bcher-kva.ab--c",
    "127.0.0.1:99999",
    "127.0.0.1:65536",
    "127.0.0.1:0",
]


def with_named(**others: str):  # type: ignore[no-untyped-def]
    """Add each NAMED authority as an explicit example (``others``: the test's other arguments)."""

    def decorate(test):  # type: ignore[no-untyped-def]
        for authority in NAMED:
            test = example(authority=authority, **others)(test)
        return test

    return decorate


PURE = settings(max_examples=200, deadline=None, database=None)


# -- user input --


@PURE
@with_named()
@given(authority=AUTHORITIES)
def test_the_reference_parser_raises_only_invalid_reference(authority: str) -> None:
    try:
        reference = parse_image_reference(f"{authority}/acme/api:v1")
    except InvalidReference:
        return
    # Whatever it accepts, httpx can build the registry's URL from, and read the host back.
    assert authority_problem(reference.api_host) is None
    assert httpx.URL(reference.location.base_url + "/v2/").host


@PURE
@with_named(scheme="https://")
@given(authority=AUTHORITIES, scheme=st.sampled_from(["", "https://", "http://"]))
def test_the_registry_parser_raises_only_invalid_registry(authority: str, scheme: str) -> None:
    try:
        location = parse_registry(scheme + authority, allow_http=True)
    except InvalidRegistry:
        return
    assert authority_problem(location.api_host) is None
    assert httpx.URL(location.base_url + "/v2/").host


# -- what a registry sends --


@PURE
@with_named()
@given(authority=AUTHORITIES)
def test_the_realm_check_raises_only_registry_errors(authority: str) -> None:
    try:
        url = check_realm(f"https://{authority}/token")
    except (UnsupportedChallenge, InsecureURLRefused):
        return
    assert url_problem(url) is None
    assert httpx.Request("GET", url).url.host  # what the token request will do with it


class _LoopbackOnlyDialer(httpcore.AnyIOBackend):
    """httpcore's real backend, refusing every address outside loopback (the test's safety net)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not ipaddress.ip_address(host).is_loopback:
            raise httpcore.ConnectError(f"the test refuses to dial {host}: loopback only")
        return await super().connect_tcp(host, port, timeout, local_address, socket_options)


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # The guard builds its dialer from httpcore.AnyIOBackend when none is given (preflight's case).
    monkeypatch.setattr(httpcore, "AnyIOBackend", _LoopbackOnlyDialer)


class _Target:
    """Where the fake registry currently points (a realm or a redirect), set per example."""

    url = ""


def _header_value(text: str) -> str:
    # The fake writes headers as latin-1; send UTF-8 bytes, as a real server would.
    return text.encode("utf-8").decode("latin-1")


@pytest.fixture
def pointing_registries(fakes: Fakes) -> tuple[_Target, FakeServer, FakeServer]:
    target = _Target()

    def realm_route(seen: Seen) -> Reply:
        challenge = f'Bearer realm="{_header_value(target.url)}",service="fake"'
        return Reply.errors(401, "UNAUTHORIZED", "auth", [("WWW-Authenticate", challenge)])

    def redirect_route(seen: Seen) -> Reply:
        return Reply(307, [("Location", _header_value(target.url))])

    return target, fakes.start(realm_route), fakes.start(redirect_route)


NETWORKED = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@NETWORKED
@with_named(path="/token")
@given(authority=AUTHORITIES, path=st.sampled_from(["/token", "/v2/", ""]))
def test_a_preflight_sent_to_a_generated_host_always_ends_with_one_of_the_six_codes(
    pointing_registries: tuple[_Target, FakeServer, FakeServer],
    loopback_only: None,
    socket_audit: SocketAudit,
    lab_ca_file: Path,
    authority: str,
    path: str,
) -> None:
    target, realm_registry, redirect_registry = pointing_registries
    target.url = f"https://{authority}{path}"
    resolver = ScriptedResolver({})

    async def both() -> list[PreflightResult]:
        return [
            await preflight(
                f"{registry.host}/acme/api:v1",
                username="alice",
                password="s3cret-pw",
                ca_file=lab_ca_file,
                ssrf_allow=LOOPBACK_ONLY,
                resolver=resolver,
                timeout=3.0,
            )
            for registry in (realm_registry, redirect_registry)
        ]

    for result in anyio.run(both):
        assert isinstance(result, PreflightResult)
        assert result.ok or result.code in set(PreflightCode), result
        assert "s3cret-pw" not in result.message
    for connection in socket_audit.connections:
        assert ipaddress.ip_address(connection.host).is_loopback, connection
