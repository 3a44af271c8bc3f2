"""A token issuer following distribution's token spec (docs/spec/auth/token.md, jwt.md, oauth.md).

`GET /token?service=S&scope=repository:NAME:pull,push&account=U`, with Basic credentials or none,
answers `{token, access_token, expires_in, issued_at}`. The token is an RS256 JWT whose `x5c` header
carries a self-signed CA certificate that the registry trusts through `rootcertbundle`. Unknown users and
wrong passwords get 401; a scope the account may not use is not an error, the token just grants less.
`POST /token` (OAuth2 `grant_type=password`) answers 404 unless `oauth_post` is set, so clients must fall
back to GET. Every request is recorded in `requests` (never the password).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fnmatch
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.lab.servers import LabServer, start_https_server
from tests.lab.tls import client_ssl_context

ANYONE = "*"  # an AccessRule account that matches every caller, anonymous included
TOKEN_PATH = "/token"
_MAX_FORM_BYTES = 64 * 1024


@dataclass(frozen=True)
class AccessRule:
    """`account` (a user name, or ANYONE) may do `actions` on resources named like `pattern` (fnmatch)."""

    account: str
    pattern: str
    actions: frozenset[str]
    resource_type: str = "repository"


@dataclass(frozen=True)
class Access:
    """One entry of a token's `access` claim (also what was requested)."""

    type: str
    name: str
    actions: tuple[str, ...]

    def as_claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True)
class IssuerRequest:
    """What the issuer saw and answered. `username` is the claimed Basic user; no password is kept."""

    method: str
    path: str
    params: Mapping[str, tuple[str, ...]]
    has_authorization: bool
    username: str | None
    status: int
    requested: tuple[Access, ...] = ()
    granted: tuple[Access, ...] = ()


class ScopeError(ValueError):
    """A scope string that is not `type:name:actions`."""


def parse_scope(text: str) -> Access:
    """`repository:host:5000/acme/api:pull,push` -> Access; the name may itself hold colons."""
    resource_type, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and resource_type and name and actions):
        raise ScopeError("malformed scope")
    return Access(resource_type, name, tuple(a for a in actions.split(",") if a))


def default_rules() -> list[AccessRule]:
    return [
        AccessRule(ANYONE, "public/*", frozenset({"pull"})),
        AccessRule("alice", "acme/*", frozenset({"pull", "push"})),
        AccessRule("oauth2accesstoken", "acme/*", frozenset({"pull"})),
        AccessRule("admin", "*", frozenset({"pull", "push", "delete", "*"})),
        AccessRule("admin", "catalog", frozenset({"*"}), resource_type="registry"),
    ]


@dataclass
class _SigningKey:
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate(cls, common_name: str) -> _SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            # Self-signed and CA=true: distribution verifies the x5c leaf against rootcertbundle.
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def x5c(self) -> str:
        return base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


class TokenIssuer:
    """The lab's token server. Start with `start()`, stop with `stop()` (or use `with`)."""

    def __init__(
        self,
        *,
        users: Mapping[str, str],
        service: str = "lab-registry",
        issuer_name: str = "guara-lab-issuer",
        rules: Iterable[AccessRule] | None = None,
        expires_in: int = 300,
    ) -> None:
        self.users: dict[str, str] = dict(users)
        self.service = service
        self.issuer_name = issuer_name
        self.rules: list[AccessRule] = list(default_rules() if rules is None else rules)
        self.expires_in = expires_in
        # When False (default), POST /token answers 404 like registries without OAuth2 (GCR).
        self.oauth_post = False
        # When True, a token is signed once per (account, grant) and handed out again while it has
        # more than half its life left: benchmarks measure clients, not RSA signing in this process.
        self.reuse_tokens = False
        self._minted: dict[tuple[str | None, tuple[Access, ...]], tuple[str, float]] = {}
        self.requests: list[IssuerRequest] = []
        self._lock = threading.Lock()
        self._signing = _SigningKey.generate(issuer_name)
        self._server: LabServer | None = None
        self._ca: trustme.CA | None = None

    def __repr__(self) -> str:
        return f"TokenIssuer(realm={self.realm!r}, service={self.service!r})"

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, *, ca: trustme.CA, cert: trustme.LeafCert) -> None:
        self._ca = ca
        self._server = start_https_server(_handler_for(self), cert=cert)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> TokenIssuer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the token issuer is not started")
        return self._server.url

    @property
    def realm(self) -> str:
        return self.url + TOKEN_PATH if self._server is not None else "<not started>"

    def write_rootcertbundle(self, path: Path) -> Path:
        path.write_bytes(self._signing.certificate_pem)
        return path

    # -- requests log ------------------------------------------------------------------------------

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def _record(self, entry: IssuerRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    # -- policy and tokens -------------------------------------------------------------------------

    def check_password(self, username: str, password: str) -> bool:
        expected = self.users.get(username)
        # Compare against a dummy for unknown users so both paths do the same work.
        candidate = (expected if expected is not None else "\0unknown").encode()
        return hmac.compare_digest(candidate, password.encode()) and expected is not None

    def allowed_actions(self, account: str | None, resource_type: str, name: str) -> frozenset[str]:
        allowed: set[str] = set()
        for rule in self.rules:
            if rule.resource_type != resource_type:
                continue
            if rule.account != ANYONE and rule.account != account:
                continue
            if fnmatch.fnmatchcase(name, rule.pattern):
                allowed |= rule.actions
        return frozenset(allowed)

    def grant(self, account: str | None, requested: Iterable[Access]) -> tuple[Access, ...]:
        """The intersection of what is requested and what `account` (None: anonymous) may do."""
        granted: list[Access] = []
        for access in requested:
            allowed = self.allowed_actions(account, access.type, access.name)
            actions = tuple(a for a in access.actions if a in allowed)
            if actions:
                granted.append(Access(access.type, access.name, actions))
        return tuple(granted)

    def mint_token(self, account: str | None, access: Iterable[Access]) -> str:
        """Sign a token granting exactly `access` (no policy check): for the lab's own pushes."""
        now = int(dt.datetime.now(dt.UTC).timestamp())
        claims = {
            "iss": self.issuer_name,
            "sub": account or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [entry.as_claim() for entry in access],
        }
        return jwt.encode(
            claims, self._signing.private_key, algorithm="RS256", headers={"x5c": [self._signing.x5c]}
        )

    def fetch_token(
        self,
        scopes: Iterable[str],
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> str:
        """GET a token over HTTPS like a registry client would (the request is recorded)."""
        if self._ca is None:
            raise RuntimeError("the token issuer is not started")
        params: list[tuple[str, str | int | float | bool | None]] = [("service", self.service)]
        params.extend(("scope", scope) for scope in scopes)
        if username is not None:
            params.append(("account", username))
        auth = httpx.BasicAuth(username, password or "") if username is not None else None
        with httpx.Client(verify=client_ssl_context(self._ca), timeout=10, trust_env=False) as client:
            response = client.get(self.realm, params=params, auth=auth)
        response.raise_for_status()
        token: str = response.json()["token"]
        return token

    def token_response(self, account: str | None, granted: tuple[Access, ...]) -> dict[str, object]:
        token = self._reused(account, granted) if self.reuse_tokens else self.mint_token(account, granted)
        issued_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return {"token": token, "access_token": token, "expires_in": self.expires_in, "issued_at": issued_at}

    def _reused(self, account: str | None, granted: tuple[Access, ...]) -> str:
        now = time.monotonic()
        with self._lock:
            found = self._minted.get((account, granted))
            if found is not None and found[1] > now:
                return found[0]
        token = self.mint_token(account, granted)
        with self._lock:
            self._minted[(account, granted)] = (token, now + self.expires_in / 2)
        return token


# -- HTTP --------------------------------------------------------------------------------------------


class _Unauthorized(Exception):
    pass


class _BadRequest(Exception):
    pass


def _handler_for(issuer: TokenIssuer) -> type[BaseHTTPRequestHandler]:
    return type("BoundIssuerHandler", (_IssuerHandler,), {"issuer": issuer})


class _IssuerHandler(BaseHTTPRequestHandler):
    issuer: ClassVar[TokenIssuer]
    protocol_version = "HTTP/1.1"
    server_version = "guara-lab-issuer"
    timeout = 30
    # Headers and body go out in separate writes: without TCP_NODELAY each answer waits ~40 ms for
    # the client's delayed ACK (Nagle), which would dominate every token exchange in benchmarks.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        return  # quiet: the requests list is the log

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: tuple(v) for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        username: str | None = None
        requested: tuple[Access, ...] = ()
        granted: tuple[Access, ...] = ()
        reply: Callable[[], None]
        try:
            if url.path != TOKEN_PATH:
                status, reply = 404, partial(self._send_json, 404, _error("NOT_FOUND", "no such endpoint"))
            else:
                username = self._basic_username()
                account = self._authenticate()
                requested = self._requested(params.get("scope", ()))
                self._check_service_and_account(params, account)
                granted = self.issuer.grant(account, requested)
                body = self.issuer.token_response(account, granted)
                status, reply = 200, partial(self._send_json, 200, body)
        except _Unauthorized:
            answer = _error("UNAUTHORIZED", "authentication required")
            status, reply = 401, partial(self._send_json, 401, answer, challenge=True)
        except _BadRequest as exc:
            status, reply = 400, partial(self._send_json, 400, _error("INVALID_REQUEST", str(exc)))
        # Recorded before answering: a client that got its answer finds the request in the log.
        self._record("GET", url.path, params, username, status, requested, granted)
        reply()

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        form = self._read_form()
        # The form holds the password: keep only the harmless fields.
        params = {k: v for k, v in form.items() if k in {"grant_type", "service", "scope", "client_id"}}
        username = form.get("username", (None,))[0]
        requested: tuple[Access, ...] = ()
        granted: tuple[Access, ...] = ()
        reply: Callable[[], None]
        try:
            if url.path != TOKEN_PATH or not self.issuer.oauth_post:
                status, reply = 404, partial(self._send_text, 404, "404 page not found\n")
            else:
                grant_type = form.get("grant_type", ("",))[0]
                if grant_type != "password":
                    raise _BadRequest("unsupported_grant_type")
                if not form.get("client_id", ("",))[0]:
                    raise _BadRequest("client_id is required")
                password = form.get("password", ("",))[0]
                if username is None or not self.issuer.check_password(username, password):
                    raise _Unauthorized
                scopes = tuple(s for value in form.get("scope", ()) for s in value.split(" ") if s)
                requested = self._requested(scopes)
                self._check_service_and_account(params, username)
                granted = self.issuer.grant(username, requested)
                body = self.issuer.token_response(username, granted)
                del body["token"]  # OAuth2 answers carry access_token only
                body["scope"] = " ".join(f"{a.type}:{a.name}:{','.join(a.actions)}" for a in granted)
                status, reply = 200, partial(self._send_json, 200, body)
        except _Unauthorized:
            status, reply = 401, partial(self._send_json, 401, {"error": "invalid_grant"})
        except _BadRequest as exc:
            status, reply = 400, partial(self._send_json, 400, {"error": str(exc)})
        self._record("POST", url.path, params, username, status, requested, granted)
        reply()

    def _record(
        self,
        method: str,
        path: str,
        params: dict[str, tuple[str, ...]],
        username: str | None,
        status: int,
        requested: tuple[Access, ...],
        granted: tuple[Access, ...],
    ) -> None:
        self.issuer._record(
            IssuerRequest(
                method=method,
                path=path,
                params=params,
                has_authorization=self.headers.get("Authorization") is not None,
                username=username,
                status=status,
                requested=requested,
                granted=granted,
            )
        )

    # -- pieces --

    def _basic_credentials(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise _Unauthorized
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _Unauthorized from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise _Unauthorized
        return username, password

    def _basic_username(self) -> str | None:
        try:
            credentials = self._basic_credentials()
        except _Unauthorized:
            return None
        return credentials[0] if credentials else None

    def _authenticate(self) -> str | None:
        """The account name, None for anonymous; bad credentials raise _Unauthorized."""
        credentials = self._basic_credentials()
        if credentials is None:
            return None
        username, password = credentials
        if not self.issuer.check_password(username, password):
            raise _Unauthorized
        return username

    def _requested(self, scopes: Iterable[str]) -> tuple[Access, ...]:
        try:
            return tuple(parse_scope(s) for value in scopes for s in value.split(" ") if s)
        except ScopeError:
            raise _BadRequest("malformed scope") from None

    def _check_service_and_account(self, params: Mapping[str, tuple[str, ...]], account: str | None) -> None:
        services = params.get("service", ())
        if services != (self.issuer.service,):
            raise _BadRequest("unknown service")
        accounts = params.get("account", ())
        if accounts and account is not None and accounts != (account,):
            raise _BadRequest("account does not match the credentials")

    def _read_form(self) -> dict[str, tuple[str, ...]]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_FORM_BYTES:
            self.close_connection = True  # the rest of the body stays unread
        raw = self.rfile.read(min(length, _MAX_FORM_BYTES)) if length > 0 else b""
        parsed = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: tuple(v) for k, v in parsed.items()}

    def _send_json(self, status: int, body: Mapping[str, object], *, challenge: bool = False) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if challenge:
            self.send_header("WWW-Authenticate", 'Basic realm="guara lab token issuer"')
        self.end_headers()
        self.wfile.write(payload)

    def _send_text(self, status: int, text: str) -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _error(code: str, message: str) -> dict[str, object]:
    return {"errors": [{"code": code, "message": message}]}


__all__ = [
    "ANYONE",
    "Access",
    "AccessRule",
    "IssuerRequest",
    "TokenIssuer",
    "default_rules",
    "parse_scope",
]
