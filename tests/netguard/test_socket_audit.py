"""The socket audit plugin catches connects that bypass the guard, and only those."""

from __future__ import annotations

import socket
import ssl

import anyio
import httpx
import pytest

from guara.netguard import DestinationBlocked, GuardPolicy, guarded_transport, parse_allow_list
from tests.socket_audit import SocketAudit

from .doubles import ScriptedResolver
from .servers import bare_listener, ok, serve

pytestmark = pytest.mark.anyio


def test_a_blocking_connect_outside_the_guard_is_detected(socket_audit: SocketAudit) -> None:
    with bare_listener("127.0.0.1") as listener:
        socket.create_connection(("127.0.0.1", listener.port)).close()
    (connection,) = socket_audit.connections
    assert (connection.host, connection.port, connection.guarded) == ("127.0.0.1", listener.port, False)
    with pytest.raises(AssertionError, match=rf"bypassed the network guard: 127\.0\.0\.1:{listener.port}"):
        socket_audit.assert_all_guarded()


def test_connect_ex_is_audited_too(socket_audit: SocketAudit) -> None:
    with bare_listener("127.0.0.1") as listener, socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", listener.port)) == 0
    assert [(c.call, c.guarded) for c in socket_audit.connections] == [("connect_ex", False)]


async def test_an_asyncio_connect_outside_the_guard_is_detected(socket_audit: SocketAudit) -> None:
    with bare_listener("127.0.0.1") as listener:
        stream = await anyio.connect_tcp("127.0.0.1", listener.port)
        await stream.aclose()
    assert [(c.host, c.guarded) for c in socket_audit.unguarded] == [("127.0.0.1", False)]
    with pytest.raises(AssertionError):
        socket_audit.assert_all_guarded()
    socket_audit.assert_all_guarded(ignore=[("127.0.0.1", listener.port)])


async def test_a_plain_httpx_client_is_detected(socket_audit: SocketAudit) -> None:
    with serve(ok) as server:
        async with httpx.AsyncClient(trust_env=False) as client:
            await client.get(server.url())
    assert [c.guarded for c in socket_audit.connections] == [False]


async def test_a_connection_through_the_guard_is_not_flagged(socket_audit: SocketAudit) -> None:
    policy = GuardPolicy(allow=parse_allow_list("127.0.0.1/32"))
    transport = guarded_transport(policy, ssl_context=ssl.create_default_context())
    with serve(ok) as server:
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            assert (await client.get(server.url())).status_code == 200
    assert [(c.host, c.port, c.guarded) for c in socket_audit.connections] == [
        ("127.0.0.1", server.port, True)
    ]
    socket_audit.assert_all_guarded()


async def test_environment_proxies_never_take_the_request_away_from_the_guard(
    socket_audit: SocketAudit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpx only mounts environment proxies when no transport is given; this pins that behaviour,
    # since a proxy transport would connect outside the guard. (Clients still use trust_env=False,
    # which also keeps ~/.netrc credentials off outbound requests.)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    resolver = ScriptedResolver.static({"registry.example.com": ["10.0.0.5"]})
    with bare_listener("127.0.0.1") as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        transport = guarded_transport(
            GuardPolicy(resolver=resolver), ssl_context=ssl.create_default_context()
        )
        async with httpx.AsyncClient(transport=transport, trust_env=True, timeout=0.5) as client:
            with pytest.raises(DestinationBlocked, match="10.0.0.5"):
                await client.get("http://registry.example.com/")
        assert proxy.arrived() == 0
    assert socket_audit.connections == []
