"""Auth flows driven by hand: every request they yield, every response fed back. No sockets."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Generator
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from guara.registry import (
    AnonymousAuth,
    AuthenticationFailed,
    BearerTokenAuth,
    Credentials,
    CredentialsRequired,
    InsecureURLRefused,
    Origin,
    ProtocolViolation,
    RegistryBasicAuth,
    RegistryError,
    TooManyRequests,
    UnsupportedChallenge,
)
from guara.registry.auth import TOKEN_REQUEST, check_realm
from guara.registry.transport import BODY_LIMIT

REGISTRY = Origin.of("https://registry.example.com")
REALM = "https://auth.example.com/token"
PASSWORD = "pa:ss wörd!$"  # noqa: S105 - test value
ALICE = Credentials("alice", SecretStr(PASSWORD))
SCOPE = "repository:acme/api:pull"

Flow = Generator[httpx.Request, httpx.Response, None]


def manifest_request(url: str = "https://registry.example.com/v2/acme/api/manifests/v1") -> httpx.Request:
    return httpx.Request("HEAD", url)


def reply(
    request: httpx.Request, status: int = 200, *, json_body: object = None, **kwargs: object
) -> httpx.Response:
    if json_body is not None:
        kwargs["content"] = json.dumps(json_body).encode()
    return httpx.Response(status, request=request, **kwargs)  # type: ignore[arg-type]


def bearer(credentials: Credentials | None = ALICE, **kwargs: object) -> BearerTokenAuth:
    options: dict[str, object] = {
        "origin": REGISTRY,
        "realm": REALM,
        "service": "registry.example.com",
        "scopes": (SCOPE,),
        "credentials": credentials,
    }
    options.update(kwargs)
    return BearerTokenAuth(**options)  # type: ignore[arg-type]


def query(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.url.query.decode())


def basic_pair(request: httpx.Request) -> str:
    scheme, _, value = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(value).decode()


# -- credentials --


def test_credentials_never_show_the_password() -> None:
    for text in (repr(ALICE), str(ALICE), repr(RegistryBasicAuth(ALICE, origin=REGISTRY)), repr(bearer())):
        assert PASSWORD not in text
    assert "alice" in repr(ALICE)


def test_credentials_from_form_values() -> None:
    assert Credentials.of(None, None) is None
    assert Credentials.of("", "") is None
    made = Credentials.of("robot$ci", "tok")
    assert made is not None
    assert made.username == "robot$ci"
    assert made.password.get_secret_value() == "tok"
    assert Credentials.of("alice", SecretStr("x")) == Credentials("alice", SecretStr("x"))


@pytest.mark.parametrize("username", ["a:b", "a\nb", "a\x00b"])
def test_usernames_http_basic_cannot_carry(username: str) -> None:
    with pytest.raises(ValueError):
        Credentials(username, SecretStr("x"))


def test_basic_header_encodes_utf8() -> None:
    header = ALICE.basic_authorization()
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == f"alice:{PASSWORD}"


# -- anonymous and basic --


def test_anonymous_strips_authorization() -> None:
    request = manifest_request()
    request.headers["Authorization"] = "Basic leftover"
    sent = next(AnonymousAuth().auth_flow(request))
    assert "Authorization" not in sent.headers


def test_basic_goes_to_the_registry_origin_only() -> None:
    auth = RegistryBasicAuth(ALICE, origin=REGISTRY)
    sent = next(auth.auth_flow(manifest_request()))
    assert basic_pair(sent) == f"alice:{PASSWORD}"
    for other in (
        "https://storage.example.com/blob",
        "http://registry.example.com/v2/",  # the plain-http twin is another origin
        "https://registry.example.com:8443/v2/",
        "https://registry.example.com.evil.test/v2/",
    ):
        request = httpx.Request("GET", other, headers={"Authorization": "Basic stale"})
        assert "Authorization" not in next(auth.auth_flow(request)).headers


def test_origin_default_ports() -> None:
    assert Origin.of("https://r.example.com") == Origin.of("https://R.example.com:443/v2/")
    assert Origin.of("http://r.example.com") != Origin.of("https://r.example.com")


# -- bearer: the token request --


def test_bearer_token_request_with_credentials() -> None:
    flow: Flow = bearer().auth_flow(manifest_request())
    token_request = next(flow)
    assert token_request.method == "GET"
    assert str(token_request.url).startswith(REALM + "?")
    assert query(token_request) == {
        "service": ["registry.example.com"],
        "scope": [SCOPE],
        "account": ["alice"],
    }
    assert basic_pair(token_request) == f"alice:{PASSWORD}"
    assert token_request.extensions[TOKEN_REQUEST] is True
    assert token_request.extensions[BODY_LIMIT] == 64 * 1024

    registry_request = flow.send(reply(token_request, json_body={"token": "T0K3N"}))
    assert registry_request.url.host == "registry.example.com"
    assert registry_request.headers["Authorization"] == "Bearer T0K3N"
    with pytest.raises(StopIteration):
        flow.send(reply(registry_request, 200))


def test_bearer_anonymous_token_request_has_no_credentials() -> None:
    flow: Flow = bearer(credentials=None).auth_flow(manifest_request())
    token_request = next(flow)
    assert "Authorization" not in token_request.headers
    assert "account" not in query(token_request)
    assert query(token_request)["scope"] == [SCOPE]


def test_realm_query_is_kept_and_service_is_optional() -> None:
    auth = bearer(realm="https://auth.example.com/jwt/auth?client_id=docker&offline_token=true", service=None)
    token_request = next(auth.auth_flow(manifest_request()))
    assert query(token_request) == {
        "client_id": ["docker"],
        "offline_token": ["true"],
        "scope": [SCOPE],
        "account": ["alice"],
    }


def test_access_token_and_default_lifetime() -> None:
    now = [1000.0]
    auth = bearer(clock=lambda: now[0])
    flow: Flow = auth.auth_flow(manifest_request())
    token_request = next(flow)
    sent = flow.send(reply(token_request, json_body={"token": "", "access_token": "ACCESS"}))
    assert sent.headers["Authorization"] == "Bearer ACCESS"
    assert auth.token is not None
    assert 1000.0 + 30 <= auth.token.expires_at <= 1000.0 + 60  # expires_in defaults to 60 s
    assert "ACCESS" not in repr(auth.token)


def test_token_is_reused_until_it_expires() -> None:
    now = [0.0]
    auth = bearer(clock=lambda: now[0])
    flow: Flow = auth.auth_flow(manifest_request())
    token_request = next(flow)
    flow.send(reply(token_request, json_body={"token": "ONE", "expires_in": 300}))

    again = next(auth.auth_flow(manifest_request()))
    assert again.headers["Authorization"] == "Bearer ONE"  # no second exchange

    now[0] = 299.0
    later: Flow = auth.auth_flow(manifest_request())
    assert later.__next__().extensions.get(TOKEN_REQUEST) is True


def test_bearer_never_goes_to_another_origin() -> None:
    auth = bearer()
    request = httpx.Request("GET", "https://storage.example.com/blob", headers={"Authorization": "Bearer x"})
    flow: Flow = auth.auth_flow(request)
    sent = next(flow)
    assert sent is request
    assert "Authorization" not in sent.headers
    with pytest.raises(StopIteration):
        flow.send(reply(sent, 401, headers={"WWW-Authenticate": 'Bearer realm="https://evil.test/t"'}))


# -- bearer: token answers --


@pytest.mark.parametrize("status", [401, 403])
def test_token_server_rejecting_credentials(status: int) -> None:
    flow: Flow = bearer().auth_flow(manifest_request())
    token_request = next(flow)
    with pytest.raises(AuthenticationFailed) as caught:
        flow.send(reply(token_request, status))
    assert not isinstance(caught.value, CredentialsRequired)
    assert caught.value.authority == "token server"
    assert caught.value.host == "auth.example.com"
    assert str(caught.value) == f"the token server at auth.example.com rejected these credentials ({status})"
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("status", [401, 403])
def test_token_server_refusing_anonymous(status: int) -> None:
    flow: Flow = bearer(credentials=None).auth_flow(manifest_request())
    token_request = next(flow)
    with pytest.raises(CredentialsRequired, match="needs a username and password"):
        flow.send(reply(token_request, status))


def test_token_server_rate_limit_and_errors() -> None:
    flow: Flow = bearer().auth_flow(manifest_request())
    token_request = next(flow)
    with pytest.raises(TooManyRequests) as limited:
        flow.send(reply(token_request, 429, headers={"Retry-After": "7"}))
    assert limited.value.retry_after == 7.0

    flow = bearer().auth_flow(manifest_request())
    token_request = next(flow)
    body = {"errors": [{"code": "UNAVAILABLE", "message": "maintenance"}]}
    with pytest.raises(RegistryError) as failed:
        flow.send(reply(token_request, 503, json_body=body))
    assert failed.value.status == 503
    assert failed.value.codes == {"UNAVAILABLE"}
    assert "?" not in failed.value.path  # the query (account=...) never lands in errors


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"token": 42}',
        b'{"token": ""}',
        b'{"expires_in": 60}',
        b'{"token": "abc\\r\\nX-Evil: 1"}',
        b'{"token": "sp ace"}',
        b'{"token": "trailing\\n"}',
        b'{"token": "caf\\u00e9"}',
        b'{"token": "del\\u007f"}',
    ],
)
def test_unusable_token_answers(content: bytes) -> None:
    flow: Flow = bearer().auth_flow(manifest_request())
    token_request = next(flow)
    with pytest.raises(ProtocolViolation):
        flow.send(reply(token_request, content=content))


# -- bearer: the realm is untrusted input --


def test_plain_http_realm_is_refused_before_any_request() -> None:
    with pytest.raises(InsecureURLRefused, match="plain HTTP"):
        bearer(realm="http://auth.example.com/token")
    assert bearer(realm="http://auth.example.com/token", allow_http=True).realm_host == "auth.example.com"


@pytest.mark.parametrize(
    "realm",
    [
        "",
        "ftp://auth.example.com/token",
        "file:///etc/passwd",
        "https://user:pw@auth.example.com/t",
        "https://",
        "/token",
    ],
)
def test_malformed_realms(realm: str) -> None:
    with pytest.raises((UnsupportedChallenge, InsecureURLRefused)):
        bearer(realm=realm)


@pytest.mark.parametrize(
    ("realm", "reason"),
    [
        ("https://xn--a-.example/token", "not a valid host name"),  # httpx: IDNAError on .host
        ("https://xn--zz.example/token", "internationalized"),
        ("https://a.xn--zz/token", "internationalized"),
        ("https://auth.example.com:99999/token", "port 99999"),  # sockets: OverflowError
        ("https://auth.example.com:65536/token", "port 65536"),  # getaddrinfo wraps it to 0
        ("https://auth.example.com:0/token", "port 0"),
        ("https://0177.0.0.1/token", "malformed"),  # httpx: InvalidURL
        ("https://127.1/token", "IPv4"),  # the C resolver would read 127.0.0.1
        ("https://[fe80::1%25eth0]/token", "zone"),
    ],
)
def test_realms_with_hostile_hosts_or_ports_are_refused_with_a_reason(realm: str, reason: str) -> None:
    with pytest.raises(UnsupportedChallenge, match="token server URL") as caught:
        check_realm(realm)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    "realm", ["https://bücher.example/token", "https://xn--bcher-kva.example/t", "https://[2001:db8::1]/t"]
)
def test_internationalized_and_ipv6_realms_are_fine(realm: str) -> None:
    assert check_realm(realm).scheme == "https"


# -- bearer: 401 after the token --


def test_401_naming_a_new_scope_exchanges_once_more() -> None:
    auth = bearer()
    flow: Flow = auth.auth_flow(manifest_request())
    first_token = next(flow)
    request = flow.send(reply(first_token, json_body={"token": "ONE"}))
    challenge = f'Bearer realm="{REALM}",service="registry.example.com",scope="repository:acme/api:pull,push"'
    second_token = flow.send(reply(request, 401, headers={"WWW-Authenticate": challenge}))
    assert query(second_token)["scope"] == ["repository:acme/api:pull,push", SCOPE]
    resent = flow.send(reply(second_token, json_body={"token": "TWO"}))
    assert resent.headers["Authorization"] == "Bearer TWO"
    with pytest.raises(StopIteration):
        flow.send(reply(resent, 401, headers={"WWW-Authenticate": challenge}))  # only once


def test_401_insufficient_scope_for_the_same_scope_is_final() -> None:
    flow: Flow = bearer().auth_flow(manifest_request())
    token_request = next(flow)
    request = flow.send(reply(token_request, json_body={"token": "ONE"}))
    challenge = f'Bearer realm="{REALM}",scope="{SCOPE}",error="insufficient_scope"'
    with pytest.raises(StopIteration):
        flow.send(reply(request, 401, headers={"WWW-Authenticate": challenge}))


def test_invalid_token_on_a_cached_token_refreshes_once() -> None:
    auth = bearer()
    flow: Flow = auth.auth_flow(manifest_request())
    flow.send(reply(next(flow), json_body={"token": "OLD", "expires_in": 3600}))

    second: Flow = auth.auth_flow(manifest_request())
    request = next(second)
    assert request.headers["Authorization"] == "Bearer OLD"
    token_request = second.send(
        reply(request, 401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    )
    assert token_request.extensions[TOKEN_REQUEST] is True
    resent = second.send(reply(token_request, json_body={"token": "NEW"}))
    assert resent.headers["Authorization"] == "Bearer NEW"


def test_invalid_token_right_after_the_exchange_is_final() -> None:
    flow: Flow = bearer().auth_flow(manifest_request())
    request = flow.send(reply(next(flow), json_body={"token": "FRESH"}))
    with pytest.raises(StopIteration):
        flow.send(reply(request, 401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}))


def test_401_from_a_redirect_hop_on_another_origin_is_not_answered() -> None:
    flow: Flow = bearer().auth_flow(manifest_request())
    request = flow.send(reply(next(flow), json_body={"token": "T"}))
    elsewhere = httpx.Request("GET", "https://cdn.example.com/blob")
    challenge = f'Bearer realm="{REALM}",scope="repository:other:pull"'
    with pytest.raises(StopIteration):
        flow.send(reply(elsewhere, 401, headers={"WWW-Authenticate": challenge}))
    assert request.headers["Authorization"] == "Bearer T"


# -- bearer: OAuth2 --


def test_oauth2_post_with_get_fallback_on_404() -> None:
    flow: Flow = bearer(oauth2=True).auth_flow(manifest_request())
    post = next(flow)
    assert post.method == "POST"
    assert "Authorization" not in post.headers
    form = parse_qs(post.content.decode())
    assert form["grant_type"] == ["password"]
    assert form["username"] == ["alice"]
    assert form["password"] == [PASSWORD]
    assert form["scope"] == [SCOPE]
    assert form["service"] == ["registry.example.com"]
    assert form["client_id"] == ["guara"]
    get = flow.send(reply(post, 404, content=b"404 page not found\n"))
    assert get.method == "GET"
    assert basic_pair(get) == f"alice:{PASSWORD}"
    sent = flow.send(reply(get, json_body={"token": "VIA-GET"}))
    assert sent.headers["Authorization"] == "Bearer VIA-GET"


def test_oauth2_post_success_uses_access_token() -> None:
    flow: Flow = bearer(oauth2=True).auth_flow(manifest_request())
    post = next(flow)
    sent = flow.send(reply(post, json_body={"access_token": "OAUTH", "expires_in": 900, "scope": SCOPE}))
    assert sent.headers["Authorization"] == "Bearer OAUTH"


def test_oauth2_post_rejection_is_final() -> None:
    flow: Flow = bearer(oauth2=True).auth_flow(manifest_request())
    post = next(flow)
    with pytest.raises(AuthenticationFailed):
        flow.send(reply(post, 401, json_body={"error": "invalid_grant"}))


def test_identity_token_uses_refresh_token_grant() -> None:
    identity = Credentials("<token>", SecretStr("REFRESH"))
    post = next(bearer(credentials=identity).auth_flow(manifest_request()))
    form = parse_qs(post.content.decode())
    assert form["grant_type"] == ["refresh_token"]
    assert form["refresh_token"] == ["REFRESH"]
    assert "username" not in form


def test_get_is_the_default_even_for_anonymous_oauth2() -> None:
    token_request = next(bearer(credentials=None, oauth2=True).auth_flow(manifest_request()))
    assert token_request.method == "GET"


# -- the async driver reads token answers, and nothing else --


class _RecordingStream(httpx.AsyncByteStream):
    def __init__(self, content: bytes) -> None:
        self.content = content
        self.read = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.read = True
        yield self.content


@pytest.mark.anyio
async def test_async_flow_reads_only_token_answers() -> None:
    flow = bearer().async_auth_flow(manifest_request())
    token_request = await flow.__anext__()
    token_stream = _RecordingStream(b'{"token": "T"}')
    request = await flow.asend(httpx.Response(200, request=token_request, stream=token_stream))
    assert token_stream.read
    assert request.headers["Authorization"] == "Bearer T"
    manifest_stream = _RecordingStream(b"x" * 10)
    with pytest.raises(StopAsyncIteration):
        await flow.asend(httpx.Response(200, request=request, stream=manifest_stream))
    assert not manifest_stream.read


def test_sync_flow_reads_token_answers_too() -> None:
    flow = bearer().sync_auth_flow(manifest_request())
    token_request = next(flow)
    request = flow.send(
        httpx.Response(200, request=token_request, stream=httpx.ByteStream(b'{"token": "S"}'))
    )
    assert request.headers["Authorization"] == "Bearer S"
