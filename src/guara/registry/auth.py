"""Registry authentication as small httpx.Auth flows: anonymous, Basic, Bearer token exchange.

Each flow is a generator (httpx's design): it yields requests and receives responses, so the logic is
tested by driving ``auth_flow`` by hand, without sockets. Rules every flow keeps:

- ``Authorization`` is attached only to requests for the origin the credentials belong to (the
  registry; for a token request, the realm). httpx drops it when a redirect leaves the origin.
- The realm is untrusted input: https only (http only when explicitly allowed), no credentials in
  it; its host is checked by the network guard at connect time, like every other socket.
- Token answers are read with a 64 KiB cap (enforced by ``BoundedTransport``) and must hold a
  ``token`` or ``access_token`` usable as a header value.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from .challenge import Challenge, parse_www_authenticate_headers
from .errors import (
    AuthenticationFailed,
    CredentialsRequired,
    InsecureURLRefused,
    InvalidCredentials,
    ProtocolViolation,
    RegistryError,
    TooManyRequests,
    UnsupportedChallenge,
)
from .hosts import url_problem
from .responses import load_json, parse_diagnostics, parse_retry_after
from .transport import BODY_LIMIT, DEFAULT_BODY_LIMIT, SECRET_BODY_ORIGIN, origin_of

# A token goes back in an Authorization header: visible ASCII only (no spaces, controls or non-ASCII).
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]+")

TOKEN_BODY_LIMIT = 64 * 1024
DEFAULT_TOKEN_LIFETIME_S = 60
# Marks a token request, whose answer the flow must read before parsing it.
TOKEN_REQUEST = "guara.token_request"  # noqa: S105 - an extension name, not a secret
# Docker's convention: this user name means "the password is an OAuth2 refresh token".
IDENTITY_TOKEN_USERNAME = "<token>"  # noqa: S105 - a marker user name, not a secret
OAUTH2_CLIENT_ID = "guara"
# Answers to an OAuth2 POST that mean "this token server only speaks GET" (GCR 404, ACR 400).
_OAUTH2_UNSUPPORTED = frozenset({400, 404, 405})


@dataclass(frozen=True, slots=True)
class Origin:
    """scheme, lower-case host and explicit port: what "same origin" compares."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: httpx.URL | str) -> Origin:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        port = parsed.port if parsed.port is not None else (443 if parsed.scheme == "https" else 80)
        return cls(parsed.scheme, parsed.host.lower(), port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and a password (or token). The password stays a SecretStr; repr hides it."""

    username: str
    password: SecretStr

    def __post_init__(self) -> None:
        if not isinstance(self.password, SecretStr):
            raise TypeError("Credentials.password must be a pydantic SecretStr")
        if ":" in self.username:
            raise InvalidCredentials("a user name cannot contain ':' in HTTP Basic authentication")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in self.username):
            raise InvalidCredentials("the user name contains control characters")
        # Basic sends UTF-8: a lone surrogate (a JSON escape, surrogateescape'd input) cannot be sent.
        if not _is_text(self.username):
            raise InvalidCredentials("the user name is not valid Unicode text")
        if not _is_text(self.password.get_secret_value()):
            raise InvalidCredentials("the password is not valid Unicode text", field="password")

    @classmethod
    def of(cls, username: str | None, password: str | SecretStr | None) -> Credentials | None:
        """Credentials from form values; None when both are empty."""
        secret = password if isinstance(password, SecretStr) else SecretStr(password or "")
        if not username and not secret.get_secret_value():
            return None
        return cls(username or "", secret)

    def basic_authorization(self) -> str:
        """The ``Authorization`` header value for HTTP Basic (a secret: never log it)."""
        pair = f"{self.username}:{self.password.get_secret_value()}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    @property
    def is_identity_token(self) -> bool:
        return self.username == IDENTITY_TOKEN_USERNAME


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _ReadsTokenAnswers(httpx.Auth):
    """Drives ``auth_flow`` like httpx does, reading the body of token answers (capped by the
    transport) and of no other response, so a manifest or blob answer is never buffered here."""

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self.auth_flow(request)
        outgoing = next(flow)
        while True:
            response = yield outgoing
            if outgoing.extensions.get(TOKEN_REQUEST):
                response.read()
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self.auth_flow(request)
        outgoing = next(flow)
        while True:
            response = yield outgoing
            if outgoing.extensions.get(TOKEN_REQUEST):
                await response.aread()
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return


class AnonymousAuth(httpx.Auth):
    """No credentials: make sure no Authorization header leaves."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.pop("Authorization", None)
        yield request


class RegistryBasicAuth(httpx.Auth):
    """HTTP Basic, attached only to requests for the registry's origin."""

    def __init__(self, credentials: Credentials, *, origin: Origin) -> None:
        self._credentials = credentials
        self._origin = origin

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if Origin.of(request.url) == self._origin:
            request.headers["Authorization"] = self._credentials.basic_authorization()
        else:
            request.headers.pop("Authorization", None)
        yield request

    def __repr__(self) -> str:
        return f"RegistryBasicAuth(username={self._credentials.username!r}, origin={self._origin})"


@dataclass(frozen=True, slots=True)
class Token:
    """A registry bearer token (a secret) and when it stops being used."""

    value: SecretStr
    expires_at: float
    scopes: tuple[str, ...]


def check_realm(realm: str, *, allow_http: bool = False) -> httpx.URL:
    """Validate a challenge's realm before anything is sent to it; raises only registry errors.

    The host and port are held to the rule user input follows (``hosts.url_problem``): a realm is
    whatever any registry on the internet chose to send."""
    if not realm:
        raise UnsupportedChallenge("the registry's Bearer challenge has no realm (token server URL)")
    try:
        url = httpx.URL(realm)
    except (httpx.InvalidURL, UnicodeError) as exc:  # UnicodeError: idna's, for non-ASCII hosts
        raise UnsupportedChallenge("the registry's token server URL (realm) is malformed") from exc
    if url.scheme == "http" and not allow_http:
        raise InsecureURLRefused(
            f"the registry's token server http://{url.netloc.decode('ascii', 'replace')} is plain HTTP; "
            "credentials are only sent over https"
        )
    # raw_host, not host: httpx decodes an xn-- host on .host and raises there when it is not IDNA.
    if url.scheme not in ("https", "http") or not url.raw_host:
        raise UnsupportedChallenge("the registry's token server URL (realm) must be an https URL")
    if url.userinfo:
        raise UnsupportedChallenge("the registry's token server URL (realm) contains credentials")
    problem = url_problem(url)
    if problem is not None:
        raise UnsupportedChallenge(f"the registry's token server URL (realm) is not usable: {problem}")
    return url.copy_with(fragment=None)


class BearerTokenAuth(_ReadsTokenAnswers):
    """Docker/OCI token authentication (distribution's token.md, oauth.md).

    Before the first registry request, exchange credentials (or nothing) for a token at the realm:
    ``GET realm?service=S&scope=repository:REPO:pull&account=USER`` with Basic credentials, or, with
    ``oauth2`` (or an identity token), ``POST`` a form (grant_type=password / refresh_token), falling
    back to GET when the POST answers 400/404/405. The token is sent only to the registry's origin.
    A 401 naming a scope not yet requested (or an expired token) triggers one new exchange.
    """

    def __init__(
        self,
        *,
        origin: Origin,
        realm: str,
        service: str | None,
        scopes: Sequence[str],
        credentials: Credentials | None,
        oauth2: bool = False,
        allow_http: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._origin = origin
        self._realm = check_realm(realm, allow_http=allow_http)
        self._service = service or None
        self._scopes: tuple[str, ...] = tuple(dict.fromkeys(scopes))
        self._credentials = credentials
        self._oauth2 = oauth2 or (credentials is not None and credentials.is_identity_token)
        self._clock = clock
        self._token: Token | None = None
        self.credentials_accepted = False

    @classmethod
    def from_challenge(
        cls,
        challenge: Challenge,
        *,
        origin: Origin,
        scopes: Sequence[str],
        credentials: Credentials | None,
        oauth2: bool = False,
        allow_http: bool = False,
    ) -> BearerTokenAuth:
        return cls(
            origin=origin,
            realm=challenge.params.get("realm", ""),
            service=challenge.params.get("service"),
            scopes=scopes,
            credentials=credentials,
            oauth2=oauth2,
            allow_http=allow_http,
        )

    @property
    def realm_host(self) -> str:
        return self._realm.netloc.decode("ascii", "replace")

    @property
    def token(self) -> Token | None:
        return self._token

    # -- the flow --

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if Origin.of(request.url) != self._origin:
            request.headers.pop("Authorization", None)
            yield request
            return
        exchanged = False
        if self._token is None or self._clock() >= self._token.expires_at:
            yield from self._exchange()
            exchanged = True
        self._attach(request)
        response = yield request
        # response.request is the last redirect hop: a 401 from another origin is not ours to answer.
        if response.status_code != 401 or Origin.of(response.request.url) != self._origin:
            return
        if self._wants_new_token(response, just_exchanged=exchanged):
            yield from self._exchange()
            self._attach(request)
            yield request

    def _attach(self, request: httpx.Request) -> None:
        assert self._token is not None
        request.headers["Authorization"] = f"Bearer {self._token.value.get_secret_value()}"

    def _wants_new_token(self, response: httpx.Response, *, just_exchanged: bool) -> bool:
        """On 401: ask once more if the challenge names scopes not requested yet, or says the token
        is invalid (expired) and it was not issued a moment ago."""
        try:
            challenges = parse_www_authenticate_headers(response.headers.get_list("www-authenticate"))
        except ValueError:
            return False
        for challenge in challenges:
            if challenge.scheme != "bearer":
                continue
            wanted = [s for s in challenge.params.get("scope", "").split(" ") if s]
            new = [s for s in wanted if s not in self._scopes]
            if new:
                # Some token servers read only the first scope: put the new ones first.
                self._scopes = (*new, *self._scopes)
                return True
            if challenge.params.get("error") == "invalid_token" and not just_exchanged:
                return True
        return False

    def _exchange(self) -> Generator[httpx.Request, httpx.Response, None]:
        if self._oauth2 and self._credentials is not None:
            sent = self._oauth2_request(self._credentials)
            response = yield sent
            if response.status_code not in _OAUTH2_UNSUPPORTED:
                self._token = self._accept(response, sent)
                return
        sent = self._get_request()
        response = yield sent
        self._token = self._accept(response, sent)

    # -- token requests --

    def _get_request(self) -> httpx.Request:
        params: list[tuple[str, str | int | float | bool | None]] = []
        if self._service:
            params.append(("service", self._service))
        params.extend(("scope", scope) for scope in self._scopes)
        headers = {"Accept": "application/json"}
        if self._credentials is not None:
            if self._credentials.username:
                params.append(("account", self._credentials.username))
            headers["Authorization"] = self._credentials.basic_authorization()
        url = self._realm.copy_merge_params(httpx.QueryParams(params))
        return httpx.Request("GET", url, headers=headers, extensions=self._token_extensions())

    def _oauth2_request(self, credentials: Credentials) -> httpx.Request:
        form: dict[str, str] = {"client_id": OAUTH2_CLIENT_ID}
        if self._service:
            form["service"] = self._service
        form["scope"] = " ".join(self._scopes)
        if credentials.is_identity_token:
            form["grant_type"] = "refresh_token"
            form["refresh_token"] = credentials.password.get_secret_value()
        else:
            form["grant_type"] = "password"
            form["username"] = credentials.username
            form["password"] = credentials.password.get_secret_value()
        return httpx.Request(
            "POST",
            self._realm,
            data=form,
            headers={"Accept": "application/json"},
            extensions={**self._token_extensions(), SECRET_BODY_ORIGIN: origin_of(self._realm)},
        )

    @staticmethod
    def _token_extensions() -> dict[str, object]:
        return {TOKEN_REQUEST: True, BODY_LIMIT: TOKEN_BODY_LIMIT}

    # -- token answers --

    def _accept(self, response: httpx.Response, sent: httpx.Request) -> Token:
        status = response.status_code
        host = self.realm_host
        if status in (401, 403):
            if self._credentials is None:
                raise CredentialsRequired(
                    f"the token server at {host} refused anonymous access ({status}): "
                    "this image needs a username and password",
                    authority="token server",
                    host=host,
                    status=status,
                )
            raise AuthenticationFailed(
                f"the token server at {host} rejected these credentials ({status})",
                authority="token server",
                host=host,
                status=status,
            )
        if status == 429:
            raise TooManyRequests(
                f"the token server at {host} is rate-limiting requests (429)",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                status=status,
                method=sent.method,
                host=host,
                path=sent.url.path,
            )
        if status != 200:
            raise RegistryError(
                f"the token server at {host} answered {status}",
                status=status,
                method=sent.method,
                host=host,
                path=sent.url.path,
                diagnostics=parse_diagnostics(response.content),
            )
        token = _token_from_body(response.content, host, now=self._clock())
        self.credentials_accepted = self._credentials is not None
        return token

    def __repr__(self) -> str:
        return (
            f"BearerTokenAuth(origin={self._origin}, realm_host={self.realm_host!r}, "
            f"scopes={self._scopes!r}, has_token={self._token is not None})"
        )


def _token_from_body(body: bytes, host: str, *, now: float) -> Token:
    try:
        data = load_json(body)
    except ValueError as exc:
        raise ProtocolViolation(f"the token server at {host} did not answer usable JSON") from exc
    if not isinstance(data, dict):
        raise ProtocolViolation(f"the token server at {host} answered JSON without a token object")
    value = next(
        (v for v in (data.get("token"), data.get("access_token")) if isinstance(v, str) and v),
        None,
    )
    if value is None:
        raise ProtocolViolation(f"the token server at {host} answered without a token")
    if not _HEADER_TOKEN.fullmatch(value):
        raise ProtocolViolation(f"the token server at {host} answered a token that is not a header value")
    lifetime = data.get("expires_in")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME_S
    # Ask again 5 s before the server's expiry, but keep at least half the lifetime.
    usable = max(float(lifetime) - 5.0, float(lifetime) / 2)
    scope_text = data.get("scope")
    scopes = tuple(scope_text.split(" ")) if isinstance(scope_text, str) else ()
    return Token(value=SecretStr(value), expires_at=now + usable, scopes=scopes)


__all__ = [
    "DEFAULT_BODY_LIMIT",
    "AnonymousAuth",
    "BearerTokenAuth",
    "Credentials",
    "Origin",
    "RegistryBasicAuth",
    "Token",
    "check_realm",
]
