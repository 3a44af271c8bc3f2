"""Real `docker-registry` processes (CNCF distribution 2.8) on loopback, and pushing images into them."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import bcrypt
import httpx

from tests.lab.images import (
    BuiltImage,
    ManifestFormat,
    Platform,
    build_image,
    build_index,
    sha256_digest,
)
from tests.lab.issuer import Access, TokenIssuer

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
AuthKind = Literal["none", "basic", "token"]

_READY_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 5.0
_PORT_ATTEMPTS = 5
_HTTP_TIMEOUT = httpx.Timeout(10.0)


class LabStartError(RuntimeError):
    """A lab registry did not come up; the message carries the tail of its log."""


# -- configuration ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistrySpec:
    """What one registry process needs; `auth_yaml` is the `auth:` section (already indented) or ""."""

    name: str
    auth: AuthKind
    workdir: Path
    cert_file: Path
    key_file: Path
    auth_yaml: str = ""


def write_htpasswd(path: Path, users: Mapping[str, str]) -> Path:
    """An htpasswd file of bcrypt entries (cost 4: the lab favours start-up time over strength)."""
    lines = []
    for username, password in users.items():
        if ":" in username:
            raise ValueError("htpasswd user names cannot contain ':'")
        digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        lines.append(f"{username}:{digest}\n")
    path.write_text("".join(lines))
    return path


def htpasswd_auth_yaml(htpasswd_file: Path, realm: str) -> str:
    return f"auth:\n  htpasswd:\n    realm: {_quote(realm)}\n    path: {_quote(str(htpasswd_file))}\n"


def token_auth_yaml(issuer: TokenIssuer, rootcertbundle: Path) -> str:
    return (
        "auth:\n  token:\n"
        f"    realm: {_quote(issuer.realm)}\n"
        f"    service: {_quote(issuer.service)}\n"
        f"    issuer: {_quote(issuer.issuer_name)}\n"
        f"    rootcertbundle: {_quote(str(rootcertbundle))}\n"
    )


def _quote(value: str) -> str:
    # A YAML double-quoted scalar: JSON string escaping is a subset of what YAML accepts.
    return json.dumps(value)


def _config_yaml(spec: RegistrySpec, port: int, storage: Path) -> str:
    return (
        "version: 0.1\n"
        "log:\n  level: error\n  formatter: text\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {_quote(str(storage))}\n"
        "  delete:\n    enabled: true\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
        f"  secret: {secrets.token_hex(16)}\n"
        "  relativeurls: false\n"
        f"  tls:\n    certificate: {_quote(str(spec.cert_file))}\n    key: {_quote(str(spec.key_file))}\n"
        "health:\n  storagedriver:\n    enabled: false\n" + spec.auth_yaml
    )


# -- processes --------------------------------------------------------------------------------------


@dataclass
class RegistryProcess:
    spec: RegistrySpec
    port: int
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate, wait; kill if it will not go. Never leaves a process behind."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _launch(spec: RegistrySpec, binary: Path) -> RegistryProcess:
    """Write the config for a fresh port and start the process (does not wait for it)."""
    port = _free_loopback_port()
    spec.workdir.mkdir(parents=True, exist_ok=True)
    config_file = spec.workdir / "config.yml"
    config_file.write_text(_config_yaml(spec, port, spec.workdir / "storage"))
    log_file = spec.workdir / "registry.log"
    command = [str(binary), "serve", str(config_file)]
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        # If the test process dies without cleaning up (SIGKILL), the registry follows it.
        command = [setpriv, "--pdeathsig", "TERM", "--", *command]
    with log_file.open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    return RegistryProcess(spec=spec, port=port, process=process, log_file=log_file)


def _answers_v2(client: httpx.Client, running: RegistryProcess) -> bool:
    try:
        response = client.get(f"https://{running.host}/v2/")
    except httpx.TransportError:
        return False
    return (
        response.status_code in (200, 401)
        and response.headers.get("Docker-Distribution-Api-Version") == "registry/2.0"
    )


def start_registries(
    specs: Sequence[RegistrySpec],
    *,
    binary: Path,
    ssl_context: ssl.SSLContext,
    on_started: Callable[[RegistryProcess], None],
) -> dict[str, RegistryProcess]:
    """Start all registries at once and wait until each answers `/v2/`.

    `on_started` receives every process as soon as it is spawned, so the caller can stop it even when
    start-up fails half-way. A process that lost its port to another one is restarted on a new port.
    """
    pending = {}
    for spec in specs:
        running = _launch(spec, binary)
        on_started(running)
        pending[spec.name] = (running, 1)
    ready: dict[str, RegistryProcess] = {}
    deadline = time.monotonic() + _READY_TIMEOUT_S
    with httpx.Client(verify=ssl_context, timeout=2.0, trust_env=False) as client:
        while pending:
            for name, (running, attempt) in list(pending.items()):
                if running.process.poll() is not None:
                    if "address already in use" in running.log_tail() and attempt < _PORT_ATTEMPTS:
                        retry = _launch(running.spec, binary)
                        on_started(retry)
                        pending[name] = (retry, attempt + 1)
                        continue
                    raise LabStartError(
                        f"registry {name!r} exited with {running.process.returncode}:\n{running.log_tail()}"
                    )
                if _answers_v2(client, running):
                    ready[name] = running
                    del pending[name]
            if pending:
                if time.monotonic() > deadline:
                    names = ", ".join(sorted(pending))
                    raise LabStartError(f"registries did not answer /v2/ in {_READY_TIMEOUT_S} s: {names}")
                time.sleep(0.01)
    return ready


# -- the registry as tests see it -------------------------------------------------------------------


@dataclass
class LabRegistry:
    """One running lab registry.

    `users` maps user name to password (for the token registry: the issuer's users);
    `images` maps "repo:tag" to the manifest digest (sha256 of the exact bytes pushed);
    `platforms` maps an index's "repo:tag" to {"linux/amd64": child manifest digest, ...}.
    """

    name: str
    auth: AuthKind
    host: str
    url: str
    users: dict[str, str] = field(repr=False)
    images: dict[str, str] = field(default_factory=dict)
    platforms: dict[str, dict[str, str]] = field(default_factory=dict)
    realm: str | None = None
    service: str | None = None
    _ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    _push_auth: Callable[[str], httpx.Auth | None] | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return int(self.host.rpartition(":")[2])

    def ref(self, repo_tag: str) -> str:
        """The image reference: `acme/api:v1` -> `127.0.0.1:PORT/acme/api:v1`."""
        return f"{self.host}/{repo_tag}"

    def client(self) -> httpx.Client:
        """An httpx client for this registry that trusts the lab CA (no credentials attached)."""
        return httpx.Client(base_url=self.url, verify=self._context(), timeout=_HTTP_TIMEOUT, trust_env=False)

    def push_image(
        self,
        repo_tag: str,
        *,
        files: Mapping[str, bytes] | None = None,
        platform: str = "linux/amd64",
        manifest_format: ManifestFormat = "oci",
    ) -> str:
        """Push a one-layer image whose layer holds `files`; record and return its manifest digest."""
        image = build_image(
            files if files is not None else _default_files(repo_tag, platform),
            platform=Platform.parse(platform),
            manifest_format=manifest_format,
        )
        return self.push_built_image(repo_tag, image)

    def push_built_image(self, repo_tag: str, image: BuiltImage) -> str:
        """Push an image built by `tests.lab.images.build_image`; record and return its digest."""
        repository, tag = _split_repo_tag(repo_tag)
        with self._push_client(repository) as client:
            digest = _push_built(client, repository, image, reference=tag)
        self.images[repo_tag] = digest
        return digest

    def push_index(
        self,
        repo_tag: str,
        *,
        platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
        manifest_format: ManifestFormat = "oci",
    ) -> str:
        """Push one image per platform (by digest), then the index under the tag; return its digest."""
        images = [
            build_image(
                _default_files(repo_tag, platform),
                platform=Platform.parse(platform),
                manifest_format=manifest_format,
            )
            for platform in platforms
        ]
        return self.push_built_index(repo_tag, images, manifest_format=manifest_format)

    def push_built_index(
        self,
        repo_tag: str,
        images: Sequence[BuiltImage],
        *,
        manifest_format: ManifestFormat = "oci",
    ) -> str:
        """Push built images (by digest), then their index under the tag; record and return its digest."""
        repository, tag = _split_repo_tag(repo_tag)
        index = build_index(images, manifest_format=manifest_format)
        with self._push_client(repository) as client:
            for image in images:
                _push_built(client, repository, image, reference=image.digest)
            digest = _put_manifest(client, repository, tag, index.media_type, index.data)
        self.images[repo_tag] = digest
        self.platforms[repo_tag] = {str(image.platform): image.digest for image in images}
        return digest

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            raise RuntimeError("this LabRegistry has no TLS context")
        return self._ssl_context

    def _push_client(self, repository: str) -> httpx.Client:
        auth = self._push_auth(repository) if self._push_auth is not None else None
        return httpx.Client(
            base_url=self.url, verify=self._context(), timeout=_HTTP_TIMEOUT, trust_env=False, auth=auth
        )


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "BearerAuth(<token>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def token_push_auth(issuer: TokenIssuer, account: str) -> Callable[[str], httpx.Auth]:
    """Push credentials for the token registry: a token minted directly (not counted in `requests`)."""

    def for_repository(repository: str) -> httpx.Auth:
        return BearerAuth(issuer.mint_token(account, [Access("repository", repository, ("pull", "push"))]))

    return for_repository


def _split_repo_tag(repo_tag: str) -> tuple[str, str]:
    repository, sep, tag = repo_tag.rpartition(":")
    if not sep or not repository or not tag or "/" in tag:
        raise ValueError(f"expected REPOSITORY:TAG, got {repo_tag!r}")
    return repository, tag


def _default_files(repo_tag: str, platform: str) -> dict[str, bytes]:
    return {"etc/lab-image": f"{repo_tag} {platform}\n".encode()}


def _push_built(client: httpx.Client, repository: str, image: BuiltImage, *, reference: str) -> str:
    for blob in (image.config, *image.layers):
        _push_blob(client, repository, blob.data)
    return _put_manifest(client, repository, reference, image.manifest.media_type, image.manifest.data)


def _push_blob(client: httpx.Client, repository: str, data: bytes) -> None:
    started = client.post(f"/v2/{repository}/blobs/uploads/")
    _expect(started, 202, "start blob upload")
    location = started.headers["Location"]
    separator = "&" if "?" in location else "?"
    finished = client.put(
        f"{location}{separator}digest={sha256_digest(data)}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    _expect(finished, 201, "finish blob upload")


def _put_manifest(client: httpx.Client, repository: str, reference: str, media_type: str, data: bytes) -> str:
    response = client.put(
        f"/v2/{repository}/manifests/{reference}", content=data, headers={"Content-Type": media_type}
    )
    _expect(response, 201, "put manifest")
    digest = sha256_digest(data)
    answered = response.headers.get("Docker-Content-Digest")
    if answered != digest:
        raise LabStartError(f"registry stored manifest as {answered}, expected {digest}")
    return digest


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise LabStartError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")


def stop_all(processes: Sequence[RegistryProcess]) -> None:
    """Terminate every process first, then wait for each (they shut down in parallel)."""
    for running in processes:
        if running.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                running.process.terminate()
    for running in processes:
        running.stop()


def restart_registry(
    running: RegistryProcess, *, ssl_context: ssl.SSLContext, binary: Path = REGISTRY_BINARY
) -> RegistryProcess:
    """Stop a registry and start it again with the same config (same port, storage, auth files);
    return once it answers `/v2/`."""
    running.stop()
    command = [str(binary), "serve", str(running.spec.workdir / "config.yml")]
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        command = [setpriv, "--pdeathsig", "TERM", "--", *command]
    with running.log_file.open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    restarted = RegistryProcess(
        spec=running.spec, port=running.port, process=process, log_file=running.log_file
    )
    deadline = time.monotonic() + _READY_TIMEOUT_S
    with httpx.Client(verify=ssl_context, timeout=2.0, trust_env=False) as client:
        while not _answers_v2(client, restarted):
            if restarted.process.poll() is not None or time.monotonic() > deadline:
                restarted.stop()
                raise LabStartError(
                    f"registry {running.spec.name!r} did not restart:\n{restarted.log_tail()}"
                )
            time.sleep(0.01)
    return restarted
