"""Fake registries and token servers on loopback, with TLS from the lab CA.

`FakeServer` is a small threaded HTTP/1.1 server over raw sockets, so a fake controls every byte and
every delay: it can stay silent, trickle one byte a second, stream forever, redirect in circles. It
binds any loopback address (127.0.0.2 too, for guard tests), counts accepted connections (to prove a
refused destination saw nothing) and records each request.

A route is `route(request) -> Reply`. The quirk fakes at the end reproduce documented behaviour of
public registries (reference/registry-protocol.md) at the level a preflight sees it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import trustme

from tests.lab.tls import lab_server_cert, server_ssl_context

# ghcr.io: a fake shaped like a public registry, reached through a resolver double (never real DNS).
FAKE_CERT_NAMES = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "localhost", "::1", "ghcr.io")
LOOPBACK = frozenset({"127.0.0.1", "127.0.0.2", "127.0.0.3", "::1"})
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class Seen:
    """A request as the fake received it (header names lower-case)."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    @property
    def basic(self) -> tuple[str, str] | None:
        """The decoded Basic credentials, if any."""
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(value).decode("utf-8").partition(":")
        return user, password

    @property
    def bearer(self) -> str | None:
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        return value if scheme.lower() == "bearer" else None


@dataclass
class Reply:
    """What to answer. `behaviour`: "normal", "silent" (never answer), "trickle" (one byte a second),
    "endless" (headers, then body bytes until the client hangs up), "close" (send, then hang up)."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    behaviour: str = "normal"

    @classmethod
    def json(cls, status: int, value: object, headers: list[tuple[str, str]] | None = None) -> Reply:
        extra = headers or []
        return cls(status, [("Content-Type", "application/json"), *extra], json.dumps(value).encode())

    @classmethod
    def errors(
        cls, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None
    ) -> Reply:
        return cls.json(status, {"errors": [{"code": code, "message": message}]}, headers)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Reply:
        return cls(status, [("Location", location)])


Route = Callable[[Seen], Reply]

_REASONS = {
    200: "OK",
    302: "Found",
    307: "Temporary Redirect",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class FakeServer:
    """A loopback HTTP(S) server driven by `route`. Use as a context manager."""

    def __init__(
        self, route: Route, *, ca: trustme.CA | None, bind: str = "127.0.0.1", tls: bool = True
    ) -> None:
        if bind not in LOOPBACK:
            raise ValueError(f"fakes listen on loopback only, not {bind!r}")
        if tls and ca is None:
            raise ValueError("a TLS fake needs the lab CA")
        self.route = route
        self.requests: list[Seen] = []
        self.connections = 0
        self._context: ssl.SSLContext | None = (
            server_ssl_context(lab_server_cert(ca, FAKE_CERT_NAMES)) if tls and ca is not None else None
        )
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((bind, 0))
        self._listener.listen(64)
        # Set here, not in the accept thread: a fake stopped before that thread runs closes the socket.
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.host = f"[{bind}]:{self.port}" if ":" in bind else f"{bind}:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept_loop, name=f"fake-{self.host}", daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            open_sockets = list(self._open)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self._thread.join(2.0)

    # -- serving --

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            # Headers and body go out in separate writes: without TCP_NODELAY, Nagle waits for the
            # client's delayed ACK (40 ms) before sending the body.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._open.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        sock: socket.socket = conn
        try:
            conn.settimeout(30)
            if self._context is not None:
                sock = self._context.wrap_socket(conn, server_side=True)
                with self._lock:
                    self._open.add(sock)
            elif conn.recv(1, socket.MSG_PEEK) == TLS_HANDSHAKE:
                # What real plain-HTTP servers do with a TLS ClientHello: a 400 and a close. Reading it
                # as a request line instead would wait for a newline that random bytes may never hold.
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            reader = sock.makefile("rb")
            while not self._stopping.is_set():
                seen = _read_request(reader)
                if seen is None:
                    return
                with self._lock:
                    self.requests.append(seen)
                reply = self.route(seen)
                if not self._send(sock, seen, reply):
                    return
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._open.discard(conn)
                self._open.discard(sock)

    def _send(self, sock: socket.socket, seen: Seen, reply: Reply) -> bool:
        """Write the reply; False when the connection must close afterwards."""
        if reply.behaviour == "silent":
            self._stopping.wait()
            return False
        head = f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}\r\n"
        names = {name.lower() for name, _ in reply.headers}
        headers = list(reply.headers)
        if reply.behaviour == "endless":
            headers.append(("Connection", "close"))
        elif "content-length" not in names:
            headers.append(("Content-Length", str(len(reply.body))))
        head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        if reply.behaviour == "trickle":
            for byte in head.encode("latin-1") + reply.body:
                if self._stopping.wait(1.0):
                    return False
                sock.sendall(bytes([byte]))
            return False
        sock.sendall(head.encode("latin-1"))
        if reply.behaviour == "endless":
            chunk = reply.body or b"a" * 16384
            while not self._stopping.is_set():
                sock.sendall(chunk)
            return False
        if seen.method != "HEAD":
            sock.sendall(reply.body)
        return reply.behaviour != "close"


TLS_HANDSHAKE = b"\x16"  # the first byte of every TLS record that opens a connection


def _read_request(reader: object) -> Seen | None:
    readline = reader.readline  # type: ignore[attr-defined]
    line = readline(65537)
    if not line:
        return None
    method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        header = readline(65537).decode("latin-1")
        if header in ("\r\n", "\n", ""):
            break
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = reader.read(length) if length else b""  # type: ignore[attr-defined]
    return Seen(method, target, headers, body)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def digest_of(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


# -- a minimal registry core, shared by the quirk fakes --

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "0" * 64,
            "size": 2,
        },
        "layers": [],
    }
).encode()
MANIFEST_DIGEST = digest_of(MANIFEST)


def manifest_reply(seen: Seen, *, digest_header: bool = True) -> Reply:
    headers = [("Content-Type", OCI_MANIFEST)]
    if digest_header:
        headers.append(("Docker-Content-Digest", MANIFEST_DIGEST))
    headers.append(("Content-Length", str(len(MANIFEST))))
    return Reply(200, headers, MANIFEST)


def split_manifest_path(path: str) -> tuple[str, str] | None:
    """/v2/<repo>/manifests/<ref> -> (repo, ref)."""
    if not path.startswith("/v2/") or "/manifests/" not in path:
        return None
    repository, _, reference = path[len("/v2/") :].rpartition("/manifests/")
    return repository, reference


@dataclass
class TokenTable:
    """Issued tokens: token -> (account or None, repositories it may pull)."""

    tokens: dict[str, tuple[str | None, frozenset[str]]] = field(default_factory=dict)
    counter: int = 0

    def issue(self, account: str | None, repositories: frozenset[str]) -> str:
        self.counter += 1
        token = f"tok-{self.counter}-{int(time.monotonic() * 1000)}"
        self.tokens[token] = (account, repositories)
        return token

    def pulls(self, token: str | None, repository: str) -> bool:
        entry = self.tokens.get(token or "")
        return entry is not None and repository in entry[1]


def scoped_repositories(seen: Seen) -> set[str]:
    names = set()
    for scope in seen.query.get("scope", []):
        for item in scope.split(" "):
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and "pull" in actions.split(","):
                names.add(name)
    return names


class BearerRegistry:
    """A registry + token server pair with configurable quirks (Docker Hub, GitLab, GCR, Harbor).

    `users` {name: password}; `readable` {repository: accounts that may pull (None = anonymous)};
    `tags` {repository: set of tags}. The registry's challenge points at `realm_url` (set once the
    token server runs) with `service`; `challenge_scope` adds scope=... to the /v2/ challenge.
    """

    def __init__(
        self,
        *,
        users: dict[str, str],
        readable: dict[str, set[str | None]],
        tags: dict[str, set[str]],
        service: str,
        token_path: str = "/token",
        challenge_scope: bool = False,
        anonymous_private_status: int | None = None,
        post_status: int | None = None,
        missing_repo_status: int = 404,
        unreadable_challenge: bool = True,
    ) -> None:
        self.users = users
        self.readable = readable
        self.tags = tags
        self.service = service
        self.token_path = token_path
        self.challenge_scope = challenge_scope
        # GitLab: anonymous token request for a private repository -> 403
        self.anonymous_private_status = anonymous_private_status
        # GCR: POST to the token endpoint answers 404
        self.post_status = post_status
        # Docker Hub / Quay: 401 insufficient_scope for a missing repository
        self.missing_repo_status = missing_repo_status
        # GCR: a 401 for an unreadable repository may come without a challenge
        self.unreadable_challenge = unreadable_challenge
        self.table = TokenTable()
        self.realm_url = ""

    # registry side
    def registry_route(self, seen: Seen) -> Reply:
        challenge = f'Bearer realm="{self.realm_url}",service="{self.service}"'
        if seen.path == "/v2/":
            if seen.bearer and seen.bearer in self.table.tokens:
                return Reply.json(200, {})
            return Reply.errors(
                401, "UNAUTHORIZED", "authentication required", [("WWW-Authenticate", challenge)]
            )
        parts = split_manifest_path(seen.path)
        if parts is None:
            return Reply.errors(404, "NOT_FOUND", "no route")
        repository, reference = parts
        scope = f"repository:{repository}:pull"
        denied = f'{challenge},scope="{scope}",error="insufficient_scope"'
        if repository not in self.tags:
            if self.missing_repo_status == 401:
                return Reply.errors(
                    401, "UNAUTHORIZED", "authentication required", [("WWW-Authenticate", denied)]
                )
            if not self.table.pulls(seen.bearer, repository):
                return Reply.errors(
                    401, "UNAUTHORIZED", "authentication required", [("WWW-Authenticate", denied)]
                )
            return Reply.errors(404, "NAME_UNKNOWN", "repository name not known to registry")
        if not self.table.pulls(seen.bearer, repository):
            headers = [("WWW-Authenticate", denied)] if self.unreadable_challenge else []
            return Reply.errors(401, "UNAUTHORIZED", "authentication required", headers)
        if reference not in self.tags[repository] and reference != MANIFEST_DIGEST:
            return Reply.errors(404, "MANIFEST_UNKNOWN", "manifest unknown")
        return manifest_reply(seen)

    # token side
    def token_route(self, seen: Seen) -> Reply:
        if urlsplit(seen.target).path != self.token_path:
            return Reply(404, [], b"not found")
        if seen.method == "POST":
            if self.post_status is not None:
                return Reply(self.post_status, [("Content-Type", "text/plain")], b"404 page not found\n")
            return Reply.json(405, {"error": "unsupported"})
        account: str | None = None
        credentials = seen.basic
        if credentials is not None:
            user, password = credentials
            if self.users.get(user) != password:
                return Reply.json(401, {"details": "incorrect username or password"})
            account = user
        wanted = scoped_repositories(seen)
        allowed = frozenset(
            name
            for name in wanted
            if account in self.readable.get(name, set()) or (None in self.readable.get(name, set()))
        )
        if account is None and self.anonymous_private_status is not None and wanted - allowed:
            return Reply.json(
                self.anonymous_private_status, {"errors": [{"code": "DENIED", "message": "access forbidden"}]}
            )
        token = self.table.issue(account, allowed)
        return Reply.json(200, {"token": token, "access_token": token, "expires_in": 300})


@contextlib.contextmanager
def bearer_pair(
    registry: BearerRegistry, *, ca: trustme.CA, same_host: bool = False, auth_bind: str = "127.0.0.3"
) -> Iterator[tuple[FakeServer, FakeServer]]:
    """Run the registry (127.0.0.1) and its token server on another host (`auth_bind`), or both on
    one server when `same_host`."""
    if same_host:

        def both(seen: Seen) -> Reply:
            if urlsplit(seen.target).path == registry.token_path:
                return registry.token_route(seen)
            return registry.registry_route(seen)

        with FakeServer(both, ca=ca) as server:
            registry.realm_url = server.url + registry.token_path
            yield server, server
        return
    with (
        FakeServer(registry.registry_route, ca=ca) as reg,
        FakeServer(registry.token_route, ca=ca, bind=auth_bind) as auth,
    ):
        registry.realm_url = auth.url + registry.token_path
        yield reg, auth
