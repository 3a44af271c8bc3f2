"""The guard's connect path with a resolver double and a recording dialer: no packet leaves."""

from __future__ import annotations

import ipaddress
import socket
import ssl

import anyio
import httpcore
import httpx
import pytest

from guara.netguard import (
    DestinationBlocked,
    DisallowedURL,
    GuardPolicy,
    NetGuardError,
    ResolutionFailed,
    parse_allow_list,
)
from guara.netguard.backend import GuardedBackend, inside_guarded_dial
from guara.netguard.resolver import SystemResolver
from guara.netguard.transport import GuardedTransport

from .doubles import OK_RESPONSE, HangingResolver, RecordingDialer, ScriptedResolver, redirect_response

pytestmark = pytest.mark.anyio

PUBLIC_V4 = "8.8.8.8"
PUBLIC_V6 = "2606:4700:4700::1111"


def client_for(
    resolver: object,
    dialer: RecordingDialer,
    *,
    allow: str = "",
    timeout: float = 5.0,
    follow_redirects: bool = False,
) -> httpx.AsyncClient:
    policy = GuardPolicy(allow=parse_allow_list(allow), resolver=resolver)  # type: ignore[arg-type]
    transport = GuardedTransport(
        GuardedBackend(policy, dialer=dialer), ssl_context=ssl.create_default_context()
    )
    return httpx.AsyncClient(
        transport=transport, trust_env=False, timeout=timeout, follow_redirects=follow_redirects
    )


async def test_public_name_is_dialed_by_its_checked_address() -> None:
    resolver = ScriptedResolver.static({"registry.example.com": [PUBLIC_V4, PUBLIC_V6]})
    dialer = RecordingDialer()
    async with client_for(resolver, dialer) as client:
        response = await client.get("https://registry.example.com/v2/")
    assert response.status_code == 200
    assert dialer.dialed == [(PUBLIC_V4, 443)]  # an IP literal: nothing downstream can resolve again
    assert resolver.calls == ["registry.example.com"]


async def test_a_name_with_one_private_answer_is_refused() -> None:
    resolver = ScriptedResolver.static({"registry.example.com": [PUBLIC_V4, "10.0.0.5"]})
    dialer = RecordingDialer()
    async with client_for(resolver, dialer) as client:
        with pytest.raises(DestinationBlocked) as caught:
            await client.get("https://registry.example.com/v2/")
    assert dialer.dialed == []
    assert caught.value.host == "registry.example.com"
    assert caught.value.address == "10.0.0.5"
    assert caught.value.reason == "private network (RFC 1918)"
    assert str(caught.value) == (
        "registry.example.com resolves to 10.0.0.5, a private network address (RFC 1918)"
    )


async def test_the_next_checked_address_is_tried_when_a_dial_fails() -> None:
    class RefusesFirst(RecordingDialer):
        async def connect_tcp(
            self, host: str, port: int, *args: object, **kwargs: object
        ) -> httpcore.AsyncNetworkStream:
            stream = await super().connect_tcp(host, port)
            if len(self.dialed) == 1:
                raise httpcore.ConnectError("connection refused")
            return stream

    resolver = ScriptedResolver.static({"registry.example.com": [PUBLIC_V6, PUBLIC_V4]})
    dialer = RefusesFirst()
    async with client_for(resolver, dialer) as client:
        assert (await client.get("http://registry.example.com/")).status_code == 200
    assert dialer.dialed == [(PUBLIC_V6, 80), (PUBLIC_V4, 80)]


async def test_keep_alive_reuses_the_connection_without_resolving_again() -> None:
    resolver = ScriptedResolver({"registry.example.com": [[PUBLIC_V4], ["127.0.0.1"]]})
    dialer = RecordingDialer([OK_RESPONSE, OK_RESPONSE, OK_RESPONSE])
    async with client_for(resolver, dialer) as client:
        for _ in range(3):
            assert (await client.get("http://registry.example.com/v2/")).status_code == 200
    # One resolution, one dial for three requests: the guard adds no round trip, and a rebinding
    # answer cannot redirect a connection whose address was already checked.
    assert resolver.calls == ["registry.example.com"]
    assert dialer.dialed == [(PUBLIC_V4, 80)]


async def test_rebinding_is_caught_on_the_next_connection() -> None:
    resolver = ScriptedResolver({"registry.example.com": [[PUBLIC_V4], ["127.0.0.1"]]})
    closing = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    dialer = RecordingDialer([closing])
    async with client_for(resolver, dialer) as client:
        assert (await client.get("http://registry.example.com/")).status_code == 200
        with pytest.raises(DestinationBlocked) as caught:
            await client.get("http://registry.example.com/")
    assert caught.value.address == "127.0.0.1"
    assert resolver.calls == ["registry.example.com", "registry.example.com"]
    assert dialer.dialed == [(PUBLIC_V4, 80)]


async def test_a_public_redirect_to_loopback_is_refused() -> None:
    resolver = ScriptedResolver.static({"registry.example.com": [PUBLIC_V4]})
    dialer = RecordingDialer([redirect_response("http://127.1/")])
    async with client_for(resolver, dialer, follow_redirects=True) as client:
        with pytest.raises(DestinationBlocked) as caught:
            await client.get("https://registry.example.com/v2/")
    assert (caught.value.host, caught.value.address) == ("127.1", "127.0.0.1")
    assert dialer.dialed == [(PUBLIC_V4, 443)]


async def test_a_token_realm_on_the_metadata_address_is_refused_even_after_a_redirect() -> None:
    resolver = ScriptedResolver.static({"auth.example.com": [PUBLIC_V4]})
    dialer = RecordingDialer([redirect_response("http://169.254.169.254/latest/api/token")])
    async with client_for(resolver, dialer, follow_redirects=True) as client:
        with pytest.raises(DestinationBlocked, match="link-local"):
            await client.get("http://169.254.169.254/latest/api/token")
        with pytest.raises(DestinationBlocked, match="169.254.169.254"):
            await client.get("https://auth.example.com/token?service=registry")
    assert dialer.dialed == [(PUBLIC_V4, 443)]


@pytest.mark.parametrize(
    "name",
    [
        "metadata.google.internal",
        "metadata.amazonaws.com",
        "metadata.google.internal.",
        "METADATA.AmazonAWS.com.",
    ],
)
async def test_metadata_names_are_refused_whatever_they_resolve_to(name: str) -> None:
    resolver = ScriptedResolver.static({name.lower(): [PUBLIC_V4]})
    dialer = RecordingDialer()
    async with client_for(resolver, dialer, allow="0.0.0.0/0, ::/0") as client:
        with pytest.raises(DestinationBlocked, match="cloud metadata service name"):
            await client.get(f"http://{name}/computeMetadata/v1/")
    assert resolver.calls == []
    assert dialer.dialed == []


@pytest.mark.parametrize("name", ["localhost", "localhost.", "LocalHost", "registry.localhost."])
async def test_localhost_names_are_loopback_whatever_the_resolver_says(name: str) -> None:
    resolver = ScriptedResolver.static({name.lower(): [PUBLIC_V4]})
    dialer = RecordingDialer()
    async with client_for(resolver, dialer) as client:
        with pytest.raises(DestinationBlocked, match="loopback") as caught:
            await client.get(f"http://{name}/")
    assert caught.value.address == "127.0.0.1"
    assert resolver.calls == []
    assert dialer.dialed == []


async def test_localhost_is_dialed_as_127_0_0_1_when_loopback_is_exempt() -> None:
    dialer = RecordingDialer()
    async with client_for(ScriptedResolver({}), dialer, allow="127.0.0.0/8") as client:
        assert (await client.get("http://localhost.:8080/")).status_code == 200
    assert dialer.dialed == [("127.0.0.1", 8080)]


async def test_dns_failure_is_resolution_failed() -> None:
    dialer = RecordingDialer()
    async with client_for(ScriptedResolver({"empty.example.com": [[]]}), dialer) as client:
        with pytest.raises(ResolutionFailed, match="could not resolve nowhere.example.com"):
            await client.get("https://nowhere.example.com/")
        with pytest.raises(ResolutionFailed, match="no addresses"):
            await client.get("https://empty.example.com/")
    assert dialer.dialed == []


async def test_system_resolver_failure_is_resolution_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stands in for getaddrinfo so no DNS query leaves the machine.
    async def no_such_name(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(anyio, "getaddrinfo", no_such_name)
    async with client_for(None, RecordingDialer()) as client:
        with pytest.raises(ResolutionFailed, match="Name or service not known") as caught:
            await client.get("http://does-not-exist.invalid/")
    assert caught.value.host == "does-not-exist.invalid"


async def test_system_resolver_reads_local_answers() -> None:
    # /etc/hosts and literals only: no DNS query.
    assert await SystemResolver().resolve("127.0.0.1", 80) == [ipaddress.ip_address("127.0.0.1")]
    assert ipaddress.ip_address("127.0.0.1") in await SystemResolver().resolve("localhost", 80)


async def test_a_hanging_resolver_ends_with_httpx_connect_timeout() -> None:
    dialer = RecordingDialer()
    with anyio.fail_after(5):  # a hang guard, not a timing assertion
        async with client_for(HangingResolver(), dialer, timeout=0.2) as client:
            with pytest.raises(httpx.ConnectTimeout):
                await client.get("http://slow-dns.example.com/")
    assert dialer.dialed == []


async def test_the_dial_gets_what_remains_of_the_connect_timeout() -> None:
    resolver = ScriptedResolver.static({"registry.example.com": [PUBLIC_V4]})
    dialer = RecordingDialer()
    async with client_for(resolver, dialer, timeout=3.0) as client:
        await client.get("http://registry.example.com/")
    (given,) = dialer.timeouts
    assert given is not None
    assert 0 < given <= 3.0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://0/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://[::1]/",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[fe80::1%25eth0]/",
        "http://169.254.169.254/",
        "http://100.64.0.1/",
        "http://192.0.0.192/",
        "http://198.18.0.1/",
        "http://255.255.255.255/",
        "http://127。0。0。1/",
        "https://[::ffff:7f00:1]:5000/v2/",
        "http://[2002:7f00:1::]/",
        "http://127.0.0.1./",
    ],
)
async def test_encoded_forms_never_reach_a_socket(url: str) -> None:
    resolver = ScriptedResolver({})  # literals must not need DNS; any lookup would fail the test
    dialer = RecordingDialer()
    async with client_for(resolver, dialer) as client:
        with pytest.raises(DestinationBlocked):
            await client.get(url)
    assert dialer.dialed == []
    assert resolver.calls == []


def test_octal_with_dotted_quads_is_rejected_by_httpx_itself() -> None:
    # httpx refuses it at parse time; the guard would read it as 127.0.0.1 (see test_addresses).
    with pytest.raises(httpx.InvalidURL):
        httpx.URL("http://0177.0.0.1/")


@pytest.mark.parametrize(
    ("url", "dialed"),
    [
        ("http://8.8.8.8/", ("8.8.8.8", 80)),
        ("https://[2001:4860:4860::8888]/", ("2001:4860:4860::8888", 443)),
        ("https://[2606:4700:4700::1111]:8443/", ("2606:4700:4700::1111", 8443)),
        ("http://100.128.0.1/", ("100.128.0.1", 80)),
    ],
)
async def test_allowed_controls_are_dialed(url: str, dialed: tuple[str, int]) -> None:
    dialer = RecordingDialer()
    async with client_for(ScriptedResolver({}), dialer) as client:
        assert (await client.get(url)).status_code == 200
    assert dialer.dialed == [dialed]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:25/", "only http and https"),
        ("ftp://registry.example.com/", "only http and https"),
        ("http://evil.example@127.0.0.1/", "embedded credentials"),
        ("https://user:s3cret@registry.example.com/v2/", "embedded credentials"),
        ("http:///v2/", "no host"),
    ],
)
async def test_disallowed_urls_are_refused_before_any_lookup(url: str, message: str) -> None:
    resolver = ScriptedResolver({})
    dialer = RecordingDialer()
    transport = GuardedTransport(
        GuardedBackend(GuardPolicy(resolver=resolver), dialer=dialer),
        ssl_context=ssl.create_default_context(),
    )
    with pytest.raises(DisallowedURL, match=message) as caught:
        await transport.handle_async_request(httpx.Request("GET", url))
    assert "s3cret" not in str(caught.value)
    assert "evil.example" not in str(caught.value)
    assert isinstance(caught.value, NetGuardError)
    assert resolver.calls == []
    assert dialer.dialed == []


@pytest.mark.parametrize("url", ["gopher://127.0.0.1:25/", "https://user:s3cret@registry.example.com/"])
async def test_disallowed_urls_are_refused_through_a_client(url: str) -> None:
    dialer = RecordingDialer()
    async with client_for(ScriptedResolver({}), dialer) as client:
        with pytest.raises(DisallowedURL) as caught:
            await client.get(url)
    assert "s3cret" not in str(caught.value)
    assert dialer.dialed == []


async def test_environment_proxies_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9/")
    resolver = ScriptedResolver.static({"registry.example.com": [PUBLIC_V4]})
    dialer = RecordingDialer()
    async with client_for(resolver, dialer) as client:
        assert (await client.get("http://registry.example.com/")).status_code == 200
    assert dialer.dialed == [(PUBLIC_V4, 80)]


async def test_unix_sockets_are_refused() -> None:
    backend = GuardedBackend(GuardPolicy(allow=parse_allow_list("0.0.0.0/0")), dialer=RecordingDialer())
    with pytest.raises(DestinationBlocked, match="unix socket"):
        await backend.connect_unix_socket("/var/run/docker.sock")


async def test_the_dial_runs_inside_the_guard_context() -> None:
    seen: list[bool] = []

    class Witness(RecordingDialer):
        async def connect_tcp(
            self, host: str, port: int, *args: object, **kwargs: object
        ) -> httpcore.AsyncNetworkStream:
            seen.append(inside_guarded_dial())
            return await super().connect_tcp(host, port)

    backend = GuardedBackend(GuardPolicy(resolver=ScriptedResolver({})), dialer=Witness())
    await backend.connect_tcp("8.8.8.8", 443)
    assert seen == [True]
    assert inside_guarded_dial() is False


def test_resolver_errors_are_socket_style() -> None:
    # The double fails like the system resolver does, so the guard's mapping is exercised.
    resolver = ScriptedResolver({})
    with pytest.raises(socket.gaierror):
        anyio.run(resolver.resolve, "nowhere", 80)


# -- what socket layers raise besides OSError --


@pytest.mark.parametrize("port", [0, 65536, 99999])
async def test_ports_outside_1_to_65535_are_refused_before_any_lookup(port: int) -> None:
    # getaddrinfo wraps 65536 to 0 and 99999 to 34463; connect raises OverflowError: never get there.
    resolver = ScriptedResolver.static({"registry.example.com": [PUBLIC_V4]})
    dialer = RecordingDialer()
    async with client_for(resolver, dialer) as client:
        with pytest.raises(DisallowedURL, match=f"port {port} is not a TCP port"):
            await client.get(f"https://registry.example.com:{port}/v2/")
    backend = GuardedBackend(GuardPolicy(resolver=resolver), dialer=dialer)
    with pytest.raises(DisallowedURL, match="not a TCP port"):
        await backend.connect_tcp("registry.example.com", port)
    assert resolver.calls == []
    assert dialer.dialed == []


async def test_an_out_of_range_port_never_reaches_the_real_socket_layer() -> None:
    backend = GuardedBackend(GuardPolicy(allow=parse_allow_list("127.0.0.0/8")))
    with pytest.raises(DisallowedURL):
        await backend.connect_tcp("127.0.0.1", 99999)


class RaisingResolver:
    """A resolver whose lookup fails the way getaddrinfo and the idna codec do for odd input."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def resolve(self, host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        UnicodeError("label too long"),  # the idna codec, for a label over 63 characters
        ValueError("embedded null character"),
        OverflowError("Python int too large to convert to C long"),
    ],
)
async def test_resolver_errors_that_are_not_oserror_are_resolution_failed(error: Exception) -> None:
    async with client_for(RaisingResolver(error), RecordingDialer()) as client:
        with pytest.raises(ResolutionFailed, match="could not resolve registry.example.com") as caught:
            await client.get("https://registry.example.com/v2/")
    assert caught.value.host == "registry.example.com"


class RaisingDialer(RecordingDialer):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def connect_tcp(
        self, host: str, port: int, *args: object, **kwargs: object
    ) -> httpcore.AsyncNetworkStream:
        self.dialed.append((host, port))
        raise self.error


@pytest.mark.parametrize(
    "error", [OverflowError("port must be 0-65535."), ValueError("bad address"), UnicodeError("x")]
)
async def test_dial_errors_that_are_not_oserror_are_connect_errors(error: Exception) -> None:
    resolver = ScriptedResolver.static({"registry.example.com": [PUBLIC_V4, "8.8.4.4"]})
    dialer = RaisingDialer(error)
    async with client_for(resolver, dialer) as client:
        with pytest.raises(httpx.ConnectError, match="could not connect"):
            await client.get("https://registry.example.com/v2/")
    assert dialer.dialed == [(PUBLIC_V4, 443), ("8.8.4.4", 443)]  # each checked address is tried
