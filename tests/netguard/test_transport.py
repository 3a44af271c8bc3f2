"""The guarded transport against real HTTP/HTTPS servers on loopback (nothing else is contacted)."""

from __future__ import annotations

import ssl

import httpx
import pytest
import trustme

from guara.netguard import DestinationBlocked, DisallowedURL, GuardPolicy, guarded_transport, parse_allow_list
from tests.socket_audit import SocketAudit

from .doubles import ScriptedResolver
from .servers import RecordedRequest, Reply, bare_listener, ok, redirect_to, serve

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def server_tls(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def guarded_client(
    tls: ssl.SSLContext | None = None, *, allow: str = "", resolver: object = None, **options: object
) -> httpx.AsyncClient:
    policy = GuardPolicy(allow=parse_allow_list(allow), resolver=resolver)  # type: ignore[arg-type]
    transport = guarded_transport(policy, ssl_context=tls or ssl.create_default_context())
    return httpx.AsyncClient(transport=transport, trust_env=False, timeout=5.0, **options)  # type: ignore[arg-type]


async def test_loopback_is_blocked_without_exemption_and_no_connection_is_made(
    socket_audit: SocketAudit,
) -> None:
    with bare_listener("127.0.0.1") as listener:
        async with guarded_client() as client:
            with pytest.raises(DestinationBlocked, match="loopback"):
                await client.get(f"http://127.0.0.1:{listener.port}/v2/")
            with pytest.raises(DestinationBlocked, match="loopback"):
                await client.get(f"http://localhost:{listener.port}/v2/")
        assert listener.arrived() == 0
    assert socket_audit.connections == []


async def test_loopback_is_reachable_with_an_exemption(socket_audit: SocketAudit) -> None:
    with serve(ok) as server:
        async with guarded_client(allow="127.0.0.0/8") as client:
            response = await client.get(server.url("/v2/"))
        assert (response.status_code, response.text) == (200, "ok")
        assert server.record.connections == 1
    assert [(c.host, c.port) for c in socket_audit.connections] == [("127.0.0.1", server.port)]
    socket_audit.assert_all_guarded()


async def test_keep_alive_one_resolution_one_connection(socket_audit: SocketAudit) -> None:
    resolver = ScriptedResolver.static({"registry.test": ["127.0.0.1"]})
    with serve(ok) as server:
        async with guarded_client(allow="127.0.0.1/32", resolver=resolver) as client:
            for _ in range(3):
                assert (await client.get(server.url("/v2/", host="registry.test"))).status_code == 200
        assert server.record.connections == 1
        assert [r.headers["host"] for r in server.record.requests] == [f"registry.test:{server.port}"] * 3
    assert resolver.calls == ["registry.test"]
    assert len(socket_audit.connections) == 1


async def test_redirect_outside_the_exemption_is_blocked(socket_audit: SocketAudit) -> None:
    with bare_listener("127.0.0.2") as elsewhere:
        target = f"http://127.0.0.2:{elsewhere.port}/"
        with serve(redirect_to(target)) as server:
            async with guarded_client(allow="127.0.0.1/32", follow_redirects=True) as client:
                with pytest.raises(DestinationBlocked) as caught:
                    await client.get(server.url("/v2/"))
            assert server.record.connections == 1
        assert elsewhere.arrived() == 0
    assert (caught.value.host, caught.value.address, caught.value.reason) == (
        "127.0.0.2",
        "127.0.0.2",
        "loopback",
    )
    assert socket_audit.to("127.0.0.2") == []
    socket_audit.assert_all_guarded()


async def test_rebinding_cannot_move_an_established_connection_nor_a_new_one(
    socket_audit: SocketAudit,
) -> None:
    # "registry.test" answers 127.0.0.1 (exempt: our stand-in for a public address), then 127.0.0.2.
    resolver = ScriptedResolver({"registry.test": [["127.0.0.1"], ["127.0.0.2"]]})
    served: list[int] = []

    def close_after_two(_request: RecordedRequest) -> Reply:
        served.append(1)
        return 200, ({"Connection": "close"} if len(served) == 2 else {}), b"ok"

    with serve(close_after_two) as server, bare_listener("127.0.0.2") as rebound:
        url = server.url("/v2/", host="registry.test")
        async with guarded_client(allow="127.0.0.1/32", resolver=resolver) as client:
            assert (await client.get(url)).status_code == 200
            assert (await client.get(url)).status_code == 200  # same connection, no new lookup
            assert resolver.calls == ["registry.test"]
            with pytest.raises(DestinationBlocked, match=r"registry\.test resolves to 127\.0\.0\.2"):
                await client.get(url)  # the server closed: a new connection, a new (refused) answer
        assert server.record.connections == 1
        assert rebound.arrived() == 0
    assert [c.host for c in socket_audit.connections] == ["127.0.0.1"]
    socket_audit.assert_all_guarded()


async def test_tls_is_pinned_to_the_address_but_verified_against_the_name(
    ca: trustme.CA, client_tls: ssl.SSLContext, socket_audit: SocketAudit
) -> None:
    resolver = ScriptedResolver.static({"registry.test": ["127.0.0.1"]})
    with serve(ok, tls=server_tls(ca, "registry.test")) as server:
        async with guarded_client(client_tls, allow="127.0.0.1/32", resolver=resolver) as client:
            response = await client.get(server.url("/v2/", host="registry.test"))
        assert response.status_code == 200
        assert server.record.sni == ["registry.test"]
        assert server.record.requests[0].headers["host"] == f"registry.test:{server.port}"
    assert [(c.host, c.guarded) for c in socket_audit.connections] == [("127.0.0.1", True)]


async def test_a_certificate_for_another_name_fails_verification(
    ca: trustme.CA, client_tls: ssl.SSLContext
) -> None:
    resolver = ScriptedResolver.static({"registry.test": ["127.0.0.1"]})
    with serve(ok, tls=server_tls(ca, "other.test")) as server:
        async with guarded_client(client_tls, allow="127.0.0.1/32", resolver=resolver) as client:
            with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
                await client.get(server.url("/v2/", host="registry.test"))
        assert server.record.requests == []


async def test_an_ip_literal_is_not_a_name_the_certificate_covers(
    ca: trustme.CA, client_tls: ssl.SSLContext
) -> None:
    with serve(ok, tls=server_tls(ca, "registry.test")) as server:
        async with guarded_client(client_tls, allow="127.0.0.1/32") as client:
            with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
                await client.get(server.url("/v2/"))


async def test_authorization_is_not_sent_to_another_origin_on_redirect() -> None:
    with serve(ok) as other_origin:
        with serve(redirect_to(other_origin.url("/landing"))) as first:
            async with guarded_client(allow="127.0.0.1/32", follow_redirects=True) as client:
                response = await client.get(first.url("/v2/"), headers={"Authorization": "Bearer s3cret"})
        assert response.status_code == 200
        assert first.record.requests[0].headers["authorization"] == "Bearer s3cret"
        (landed,) = other_origin.record.requests
        assert landed.path == "/landing"
        assert "authorization" not in landed.headers


async def test_authorization_is_kept_on_a_same_origin_redirect() -> None:
    # The control for the test above: the header is dropped because the origin changed.
    def respond(request: RecordedRequest) -> Reply:
        return (302, {"Location": "/final"}, b"") if request.path == "/start" else (200, {}, b"ok")

    with serve(respond) as server:
        async with guarded_client(allow="127.0.0.1/32", follow_redirects=True) as client:
            await client.get(server.url("/start"), headers={"Authorization": "Bearer s3cret"})
        assert [r.headers.get("authorization") for r in server.record.requests] == ["Bearer s3cret"] * 2


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://127.0.0.1:25/", "http://evil.example@127.0.0.1/"]
)
async def test_refused_urls_open_no_socket(url: str, socket_audit: SocketAudit) -> None:
    async with guarded_client(allow="127.0.0.0/8") as client:
        with pytest.raises(DisallowedURL):
            await client.get(url)
    assert socket_audit.connections == []
