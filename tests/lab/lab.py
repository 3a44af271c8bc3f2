"""`start_lab`: a CA, three real registries (anonymous, Basic, token) and a token issuer, with images."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trustme

from tests.lab.cloud import ECR_TOKEN_PASSWORD, GOOGLE_ACCESS_TOKEN
from tests.lab.issuer import TokenIssuer
from tests.lab.registry import (
    REGISTRY_BINARY,
    AuthKind,
    LabRegistry,
    RegistryProcess,
    RegistrySpec,
    htpasswd_auth_yaml,
    restart_registry,
    start_registries,
    stop_all,
    token_auth_yaml,
    token_push_auth,
    write_htpasswd,
)
from tests.lab.tls import client_ssl_context, lab_server_cert

# Colon, quote, semicolon, $(...), spaces and non-ASCII: 34 UTF-8 bytes, inside bcrypt's 72.
ALICE_PASSWORD = 'p@ss:w"o;rd $(rm -rf) ñ 密码'
BASIC_USERS: dict[str, str] = {
    "alice": ALICE_PASSWORD,
    "robot$ci": "robot-ci-secret",
    "org+robot": "org-robot-token",
    "AWS": ECR_TOKEN_PASSWORD,  # what moto's ECR GetAuthorizationToken hands out (tests.lab.cloud)
}
TOKEN_USERS: dict[str, str] = {
    "alice": ALICE_PASSWORD,  # pull/push acme/*
    "bob": "bob-password",  # nothing private (public/* pull, like anyone)
    "admin": "admin-password",  # everything
    "oauth2accesstoken": GOOGLE_ACCESS_TOKEN,  # pull acme/*: the lab's Google token server's answer
}
BASIC_REALM = "guara lab basic"
TOKEN_SERVICE = "guara-lab-registry"
TOKEN_ISSUER_NAME = "guara-lab-issuer"


@dataclass
class Lab:
    ca: trustme.CA
    ca_file: Path
    anonymous: LabRegistry
    basic: LabRegistry
    token: LabRegistry
    issuer: TokenIssuer
    workdir: Path
    server_cert: trustme.LeafCert = field(repr=False)

    @property
    def registries(self) -> tuple[LabRegistry, LabRegistry, LabRegistry]:
        return (self.anonymous, self.basic, self.token)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only the lab CA."""
        return client_ssl_context(self.ca)


@contextlib.contextmanager
def start_lab(
    workdir: Path,
    *,
    ca: trustme.CA | None = None,
    registry_binary: Path = REGISTRY_BINARY,
) -> Iterator[Lab]:
    """Start the lab under `workdir`; every process and thread is stopped when the block ends.

    Call it from the thread that will outlive the lab (the registries are tied to their parent thread).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    ca = ca if ca is not None else trustme.CA()
    ca_file = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert = lab_server_cert(ca)
    cert_file = workdir / "server-chain.pem"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key_file = workdir / "server-key.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    client_context = client_ssl_context(ca)

    issuer = TokenIssuer(users=TOKEN_USERS, service=TOKEN_SERVICE, issuer_name=TOKEN_ISSUER_NAME)
    processes: list[RegistryProcess] = []
    try:
        issuer.start(ca=ca, cert=cert)
        htpasswd = write_htpasswd(workdir / "htpasswd", BASIC_USERS)
        rootcertbundle = issuer.write_rootcertbundle(workdir / "token-rootcertbundle.pem")

        def spec(name: str, auth_yaml: str, kind: AuthKind) -> RegistrySpec:
            return RegistrySpec(
                name=name,
                auth=kind,
                workdir=workdir / name,
                cert_file=cert_file,
                key_file=key_file,
                auth_yaml=auth_yaml,
            )

        running = start_registries(
            [
                spec("anonymous", "", "none"),
                spec("basic", htpasswd_auth_yaml(htpasswd, BASIC_REALM), "basic"),
                spec("token", token_auth_yaml(issuer, rootcertbundle), "token"),
            ],
            binary=registry_binary,
            ssl_context=client_context,
            on_started=processes.append,
        )

        def lab_registry(name: str) -> LabRegistry:
            host = running[name].host
            return LabRegistry(
                name=name,
                auth=running[name].spec.auth,
                host=host,
                url=f"https://{host}",
                users={},
                _ssl_context=client_context,
            )

        anonymous = lab_registry("anonymous")
        basic = lab_registry("basic")
        basic.users = dict(BASIC_USERS)
        basic.realm = BASIC_REALM
        basic._push_auth = lambda _repository: _basic_auth("alice", ALICE_PASSWORD)
        token = lab_registry("token")
        token.users = dict(TOKEN_USERS)
        token.realm = issuer.realm
        token.service = issuer.service
        token._push_auth = token_push_auth(issuer, "admin")

        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="lab-push") as pool:
            pushes: list[Future[object]] = [
                pool.submit(anonymous.push_image, "acme/api:v1"),
                pool.submit(basic.push_image, "acme/api:v1"),
                pool.submit(_push_token_images, token),
            ]
            for push in pushes:
                push.result()

        yield Lab(
            ca=ca,
            ca_file=ca_file,
            anonymous=anonymous,
            basic=basic,
            token=token,
            issuer=issuer,
            workdir=workdir,
            server_cert=cert,
        )
    finally:
        stop_all(processes)
        issuer.stop()


def _push_token_images(token: LabRegistry) -> None:
    token.push_image("acme/api:v1")
    token.push_image("public/hello:latest")
    token.push_index("acme/multi:v1", platforms=("linux/amd64", "linux/arm64"))


def _basic_auth(username: str, password: str) -> httpx.BasicAuth:
    return httpx.BasicAuth(username, password)


@dataclass
class OwnRegistry:
    """A Basic-auth registry of one test's own (sharing the lab's CA and certificate), whose users can
    be rewritten: `set_users` rewrites its htpasswd and restarts it on the same port (distribution 2.8
    reads htpasswd at start only)."""

    registry: LabRegistry
    htpasswd: Path
    process: RegistryProcess
    ssl_context: ssl.SSLContext = field(repr=False)

    def set_users(self, users: dict[str, str]) -> None:
        write_htpasswd(self.htpasswd, users)
        self.process = restart_registry(self.process, ssl_context=self.ssl_context)
        self.registry.users = dict(users)

    def stop(self) -> None:
        self.process.stop()


@contextlib.contextmanager
def own_registry(lab: Lab, workdir: Path, users: dict[str, str]) -> Iterator[OwnRegistry]:
    """Start a Basic-auth registry under `workdir` with `users` (the first one pushes); stopped at the end."""
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd = write_htpasswd(workdir / "htpasswd", users)
    spec = RegistrySpec(
        name="own",
        auth="basic",
        workdir=workdir / "registry",
        cert_file=lab.workdir / "server-chain.pem",
        key_file=lab.workdir / "server-key.pem",
        auth_yaml=htpasswd_auth_yaml(htpasswd, "guara lab own"),
    )
    processes: list[RegistryProcess] = []
    context = lab.ssl_context()
    try:
        running = start_registries(
            [spec], binary=REGISTRY_BINARY, ssl_context=context, on_started=processes.append
        )
        process = running["own"]
        pusher, password = next(iter(users.items()))
        registry = LabRegistry(
            name="own",
            auth="basic",
            host=process.host,
            url=f"https://{process.host}",
            users=dict(users),
            _ssl_context=context,
        )
        registry.realm = "guara lab own"
        registry._push_auth = lambda _repository: _basic_auth(pusher, password)
        own = OwnRegistry(registry, htpasswd, process, context)
        yield own
        own.stop()
    finally:
        stop_all(processes)
