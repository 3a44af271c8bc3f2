"""Run pinned images on a container engine through the Docker Engine API (Podman or dockerd).

``DockerEngine(url)`` speaks to one engine over its unix socket with the Docker SDK's low-level
``APIClient`` at API version 1.41 (Podman 4.3 reports it, dockerd 20.10 serves it; pinning it spares
the version negotiation, a ``GET /version`` that costs 0.6 s on Podman). Every method is async; the SDK
is synchronous, so each call runs in a worker thread, bounded by ``api_timeout_s`` (a pull by its own
``timeout_s``). SDK, requests and urllib3 exceptions become ``guara.deploy.errors`` in one place,
``_translate``; nothing else here catches them.

What ``run`` asks of the engine, whatever the image says: never privileged; no binds, mounts or
devices from the host; the host's network, PID and IPC namespaces never shared; every capability
dropped but ``KEPT_CAPABILITIES``; ``no-new-privileges``; memory (swap included), CPU and PID limits;
a bounded log; the container attached to its project's network only, and its one port published on
``publish_ip`` alone, on a host port the engine chooses. Credentials never reach ``run``: they exist
only for one pull, as its ``X-Registry-Auth`` header (never an auth file, config file, environment
variable or label), and the SDK's own credential lookup (``~/.docker/config.json``, credential
helpers) is never used: an anonymous pull sends no header at all.

A pull is not an access check: dockerd does not ask the registry again for a digest it already holds
(any project could "pull" it with no credentials), so guara checks access itself (the preflight)
before it pulls.

Facts this module relies on, per engine (asserted by ``tests/deploy/test_engine.py``):

- errors of a pull: Podman answers 200 and ends the progress stream with an ``error`` line; dockerd
  answers 404 (manifest unknown; no credentials on a token registry) or 500 (bad credentials,
  unreachable registry) before any stream;
- a published port whose container does not listen: Podman (netavark's DNAT) refuses the connection;
  dockerd's docker-proxy accepts it and closes it at once (see ``wait_ready``);
- a crash-looping container under a restart policy: Podman reports ``stopped`` / ``running`` in turn,
  dockerd ``restarting`` (with ``Running`` true); both count ``RestartCount`` up;
- name conflicts and networks in use: dockerd answers 409 / 403, Podman 500 with a message.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import ipaddress
import json
import logging
import math
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import docker
import docker.errors
import httpx
import requests
import requests.exceptions
import urllib3.exceptions
from pydantic import SecretStr

from guara.registry import PreflightCode, parse_image_reference, same_registry

from .errors import EngineError, EngineNotFound, EngineUnavailable, PullFailed, StartFailed
from .logtext import bound_lines, clean_log_lines
from .probes import PROBE_TIMEOUT_S, health_url, probe_address, probe_http, probe_tcp
from .render import LABEL_PREFIX

logger = logging.getLogger("guara.deploy.engine")

T = TypeVar("T")

API_VERSION = "1.41"
PROJECT_LABEL = f"{LABEL_PREFIX}/project-id"
"""Every container spec carries it; its project network is created with it and must carry the same."""
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
NETWORK_LABEL_KEYS = (PROJECT_LABEL, MANAGED_BY_LABEL)
"""The spec labels that its network is created with (the others describe one container)."""

# Docker's default set minus AUDIT_WRITE, FSETID, MKNOD, NET_RAW (spoofed packets on the project's
# bridge), SETFCAP, SETPCAP and SYS_CHROOT. What stays lets common images start as root and drop to
# their own user (nginx, postgres), own their files, bind ports below 1024 and signal their children.
KEPT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID")
PIDS_LIMIT = 1024
LOG_MAX_SIZE = "10m"
LOG_MAX_FILES = "3"
RESTART_POLICIES = frozenset({"no", "always", "unless-stopped", "on-failure"})
MIN_MEMORY_BYTES = 6 * 1024 * 1024  # dockerd refuses less

MAX_LOG_TAIL = 1000
MAX_LOG_BYTES = 256 * 1024
FAILURE_LOG_LINES = 50
FAILURE_LOG_BYTES = 8 * 1024

_POLL_FIRST_S = 0.01
# Probes speak plain HTTP to a published port: a context with no roots (nothing to load per probe;
# any TLS would fail to verify).
_PLAIN_HTTP = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_POLL_MAX_S = 0.25

_MAX_QUOTED = 400
_MAX_STREAM_LINE = 1024 * 1024
_IDLE_CLIENTS = 4

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Network modes that are not a network's name, or networks every container may share.
_RESERVED_NETWORKS = frozenset({"host", "none", "bridge", "default", "private", "slirp4netns", "pasta"})
_PINNED = re.compile(r"sha256:[0-9a-f]{64}")
_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class EngineAuth:
    """Credentials for one pull, sent only as that pull's ``X-Registry-Auth`` header. ``registry`` is
    the image's registry as in its reference (``"127.0.0.1:5001"``, ``"ghcr.io"``)."""

    registry: str
    username: str
    password: SecretStr = field(repr=False)


@dataclass(frozen=True)
class ContainerSpec:
    """One container to run. ``image`` is pinned by digest; ``labels`` carry ``PROJECT_LABEL``;
    ``network`` is the project's own network (created when missing); ``port`` (tcp) is published on
    ``publish_ip`` at a host port the engine chooses."""

    name: str
    image: str
    labels: Mapping[str, str]
    network: str
    port: int
    publish_ip: str
    memory_bytes: int
    nano_cpus: int
    restart_policy: str = "unless-stopped"

    def __post_init__(self) -> None:
        check_name(self.name, "container name")
        check_network_name(self.network)
        check_pinned(self.image)
        labels = dict(self.labels)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise ValueError("labels must map text to text")
        if not labels.get(PROJECT_LABEL):
            raise ValueError(f"labels must name the project ({PROJECT_LABEL})")
        object.__setattr__(self, "labels", MappingProxyType(labels))
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not a TCP port")
        address = ipaddress.ip_address(self.publish_ip)  # ValueError when not an IP literal
        if address.is_unspecified:
            raise ValueError("publish_ip must be one address, not every address (0.0.0.0 / ::)")
        if self.memory_bytes < MIN_MEMORY_BYTES:
            raise ValueError(f"memory_bytes must be at least {MIN_MEMORY_BYTES}")
        if self.nano_cpus <= 0:
            raise ValueError("nano_cpus must be positive")
        if self.restart_policy not in RESTART_POLICIES:
            raise ValueError(f"restart_policy must be one of {', '.join(sorted(RESTART_POLICIES))}")

    @property
    def network_labels(self) -> dict[str, str]:
        return {key: self.labels[key] for key in NETWORK_LABEL_KEYS if key in self.labels}


@dataclass(frozen=True)
class RunningContainer:
    """A started container and where its port is published."""

    id: str
    name: str
    host_port: int
    url: str


@dataclass(frozen=True)
class ContainerState:
    """What the engine says about one container. ``running`` is false while it restarts;
    ``started_at`` is aware UTC (None before its first start); ``url`` is set while it runs.

    ``labels`` are the engine's: the spec's labels merged over the image's own (both engines copy
    an image's labels onto its containers). Keys guara sets always win, so filter only on keys
    that guara sets on every container: an image can add any other key."""

    id: str
    name: str
    labels: Mapping[str, str]
    running: bool
    status: str
    exit_code: int | None
    started_at: datetime | None
    url: str | None
    image: str


@dataclass(frozen=True)
class EngineInfo:
    """Which engine answers: ``product`` is ``"podman"`` or ``"docker"``."""

    product: str
    version: str
    api_version: str


def check_name(name: str, what: str) -> None:
    """Container and network names: what both engines accept (``[A-Za-z0-9][A-Za-z0-9_.-]*``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{what} must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most 128 characters)")


def check_network_name(name: str) -> None:
    check_name(name, "network name")
    if name.lower() in _RESERVED_NETWORKS:
        raise ValueError(f"{name!r} is an engine's network mode or shared network, not a project network")


def check_pinned(image: str) -> None:
    reference = parse_image_reference(image)  # InvalidReference (a ValueError) when malformed
    if reference.digest is None or not _PINNED.fullmatch(reference.digest) or reference.tag is not None:
        raise ValueError("the image must be pinned by digest (registry/repository@sha256:<hex>)")


class DockerEngine:
    """One container engine behind a unix socket (``unix:///run/podman/podman.sock``,
    ``unix:///var/run/docker.sock``). A plain TCP endpoint is refused: the Docker Engine API has no
    authentication of its own, and whoever reaches it is root on the host."""

    def __init__(self, url: str, *, api_timeout_s: float = 60.0) -> None:
        if not isinstance(url, str) or not url.startswith("unix:///"):
            raise ValueError("the engine URL must be a unix socket: unix:///path/to/engine.sock")
        if api_timeout_s <= 0:
            raise ValueError("api_timeout_s must be positive")
        self.url = url
        self.api_timeout_s = api_timeout_s
        self._clients = _ClientPool(url, api_timeout_s)

    def __repr__(self) -> str:
        return f"DockerEngine({self.url!r})"

    async def ping(self) -> EngineInfo:
        """Which engine answers, from ``GET /_ping``'s headers."""
        return await self._call(_ping, what="ping the engine")

    async def pull(self, image: str, *, auth: EngineAuth | None, timeout_s: float) -> None:
        """Pull ``image`` (pinned by digest) within ``timeout_s``; raise ``PullFailed`` with a
        preflight code. ``auth`` must be for the image's registry; None pulls anonymously."""
        check_pinned(image)
        if auth is not None and not same_registry(auth.registry, parse_image_reference(image)):
            raise ValueError("the credentials are not for the image's registry")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        job = _PullJob(image=image, auth=auth, deadline=time.monotonic() + timeout_s)
        connect_timeout = min(self.api_timeout_s, timeout_s)
        # The worker stops itself at the deadline (its socket timeout shrinks to what is left); the
        # scope is a backstop that returns control even if the engine holds the socket open.
        try:
            with anyio.fail_after(timeout_s + 1.0):
                await self._in_thread(functools.partial(_pull, job=job, connect_timeout=connect_timeout))
        except TimeoutError:
            raise job.timed_out() from None
        logger.info("pulled %s", image)

    async def run(self, spec: ContainerSpec) -> RunningContainer:
        """Ensure the project network, create and start the container, and read its published port
        back. When it cannot start (or dies before its port can be read) it is removed and
        ``StartFailed`` carries the engine's reason and its logs. A run cut short (timeout,
        cancellation) may leave a created container behind: it carries the spec's labels, so
        ``list_containers`` finds it."""
        return await self._call(functools.partial(_run, spec=spec), what=f"run {spec.name}")

    async def wait_ready(
        self,
        container: RunningContainer,
        *,
        health_path: str | None,
        timeout_s: float,
    ) -> None:
        """Return once the container serves: a GET of ``health_path`` answered below 400, or (no
        path) a TCP connection to its port that stays open. Raise ``StartFailed`` with its last log
        lines when it exits or restarts meanwhile, or is not ready within ``timeout_s``. The
        container is left as it is: the caller removes it.

        The probes dial the engine's own published port (``container.url``, an IP literal the engine
        reported), never a user-named host, so they do not go through the network guard.
        """
        host, port = probe_address(container.url)
        url = health_url(container.url, health_path) if health_path is not None else None
        failure: str | None = None
        outcome = "no probe answered yet"
        delay = _POLL_FIRST_S
        with anyio.move_on_after(timeout_s) as scope:
            async with httpx.AsyncClient(
                trust_env=False, follow_redirects=False, verify=_PLAIN_HTTP
            ) as client:
                while True:
                    left = max(scope.deadline - anyio.current_time(), 0.01)
                    if url is not None:
                        outcome_or_none = await probe_http(client, url, timeout_s=min(PROBE_TIMEOUT_S, left))
                    else:
                        outcome_or_none = await probe_tcp(host, port, timeout_s=min(PROBE_TIMEOUT_S, left))
                    if outcome_or_none is None:
                        logger.info("container %s is ready", container.name)
                        return
                    outcome = outcome_or_none
                    # Not serving yet: has it died meanwhile? (Asked only then: a probe is cheaper.)
                    state = await self._call(
                        functools.partial(_inspect, container_id=container.id), what="inspect"
                    )
                    failure = _not_serving(state)
                    if failure is not None:
                        break
                    await anyio.sleep(delay)
                    delay = min(delay * 1.5, _POLL_MAX_S)
        if failure is None:
            failure = f"the container was not ready within {timeout_s:g} s ({outcome})"
        raise StartFailed(f"{container.name}: {failure}", logs=await self._failure_logs(container.id))

    async def logs(self, container_id: str, *, tail: int) -> list[str]:
        """Its last ``tail`` lines (at most ``MAX_LOG_TAIL`` and ``MAX_LOG_BYTES``), stdout and
        stderr together, decoded with replacement and cleaned of control characters (tab kept) and
        terminal escapes. Not redacted: the caller redacts secrets. ``EngineNotFound`` when there
        is no such container."""
        tail = max(0, min(int(tail), MAX_LOG_TAIL))
        if tail == 0:
            return []
        raw = await self._call(
            functools.partial(_read_logs, container_id=container_id, tail=tail, max_bytes=MAX_LOG_BYTES),
            what="read the logs",
        )
        return clean_log_lines(raw)[-tail:]

    async def remove(self, container_id: str, *, grace_s: float = 10.0) -> None:
        """Stop (SIGTERM, then SIGKILL after ``grace_s``) and remove it with its anonymous volumes.
        A container that is already gone is fine."""
        grace = max(0, math.ceil(grace_s))
        await self._call(
            functools.partial(_remove, container_id=container_id, grace_s=grace),
            what="remove a container",
            budget=self.api_timeout_s + grace,
        )

    async def inspect(self, container_id: str) -> ContainerState | None:
        """Its state, or None when there is no such container."""
        attrs = await self._call(functools.partial(_inspect, container_id=container_id), what="inspect")
        return None if attrs is None else _state(attrs)

    async def list_containers(self, labels: Mapping[str, str]) -> list[ContainerState]:
        """Every container (running or not) carrying all of ``labels`` (at least one is required)."""
        if not labels:
            raise ValueError("list_containers needs at least one label to filter on")
        wanted = dict(labels)
        found = await self._call(functools.partial(_list, labels=wanted), what="list containers")
        return [_state(attrs) for attrs in found]

    async def remove_network(self, name: str) -> None:
        """Remove a project network. Missing is fine; containers still attached raise
        ``EngineError`` (code ``network_in_use``); a network without ``PROJECT_LABEL`` is refused."""
        check_network_name(name)
        await self._call(functools.partial(_remove_network, name=name), what=f"remove network {name}")

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._clients.close)

    async def _call(self, work: Callable[[Any], T], *, what: str, budget: float | None = None) -> T:
        """``work(api)`` in a worker thread, within ``budget`` (the API timeout by default)."""
        budget = self.api_timeout_s if budget is None else budget
        try:
            with anyio.fail_after(budget):
                return await self._in_thread(work)
        except TimeoutError:
            raise EngineUnavailable(f"the engine did not {what} within {budget:g} s") from None

    async def _in_thread(self, work: Callable[[Any], T]) -> T:
        def run() -> T:
            with self._clients.client() as api:
                return work(api)

        # Abandoned on cancellation: the thread ends by itself (every socket read has a timeout).
        return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)

    async def _failure_logs(self, container_id: str) -> tuple[str, ...]:
        """The last lines of a failed container's log for ``StartFailed``, or none if unreadable."""
        try:
            lines = await self.logs(container_id, tail=FAILURE_LOG_LINES)
        except EngineError as exc:
            logger.warning("could not read the logs of %s: %s", container_id, exc)
            return ()
        return bound_lines(lines, max_lines=FAILURE_LOG_LINES, max_bytes=FAILURE_LOG_BYTES)


class _ClientPool:
    """``APIClient``s for one engine, one per worker thread at a time.

    An ``APIClient`` is a ``requests.Session``, which requests does not promise to be thread-safe
    (docker/docker-py#3229 is open on the same question); lending each client to one thread at a
    time keeps the connection reuse without relying on it."""

    def __init__(self, url: str, timeout: float) -> None:
        self._url = url
        self._timeout = timeout
        self._idle: list[docker.APIClient] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def client(self) -> Iterator[docker.APIClient]:
        with self._lock:
            if self._closed:
                raise EngineError("the engine client is closed", code="closed")
            api = self._idle.pop() if self._idle else None
        if api is None:
            with _translate("connect to the engine"):
                api = docker.APIClient(base_url=self._url, version=API_VERSION, timeout=self._timeout)
            api.trust_env = False  # no proxy from the environment for the engine's socket
        try:
            yield api
        finally:
            with self._lock:
                if not self._closed and len(self._idle) < _IDLE_CLIENTS:
                    self._idle.append(api)
                    api = None
            if api is not None:
                api.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for api in idle:
            api.close()


@dataclass(frozen=True)
class _PullJob:
    image: str
    auth: EngineAuth | None = field(repr=False)
    deadline: float

    @property
    def secrets(self) -> tuple[str, ...]:
        """The forms the password may take in an answer: scrubbed from every message."""
        if self.auth is None:
            return ()
        password = self.auth.password.get_secret_value()
        if not password:
            return ()
        pair = f"{self.auth.username}:{password}".encode()
        forms = {
            password,
            json.dumps(password)[1:-1],
            json.dumps(password, ensure_ascii=False)[1:-1],
            base64.b64encode(pair).decode(),
            base64.urlsafe_b64encode(pair).decode(),
            base64.b64encode(password.encode()).decode().rstrip("="),
            registry_auth_header(self.auth),
        }
        return tuple(sorted(forms, key=len, reverse=True))

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def timed_out(self) -> PullFailed:
        return PullFailed(f"pulling {self.image} did not finish in time", code=PreflightCode.TIMEOUT)

    def failed(self, explanation: str, status: int | None) -> PullFailed:
        """The engine's refusal as a preflight code, with its words (scrubbed of the password)."""
        reference = parse_image_reference(self.image)
        code = _classify_pull(explanation, reference.registry, reference.repository, reference.digest or "")
        detail = _quoted(_scrub(explanation, self.secrets))
        return PullFailed(f"the engine could not pull {self.image}: {detail}", code=code, status=status)


@contextlib.contextmanager
def _translate(what: str, *, pull: _PullJob | None = None) -> Iterator[None]:
    """Turn the SDK's, requests' and urllib3's exceptions (and socket errors) into engine errors.

    During a pull the original exception holds the request, and through its traceback the frames,
    that carried ``X-Registry-Auth``: it is neither chained nor kept (its traceback is cleared)."""
    failure: EngineError
    try:
        yield
    except EngineError:
        raise
    except docker.errors.APIError as exc:
        status = exc.status_code
        explanation = _explanation(exc)
        if pull is not None:
            failure = pull.failed(explanation, status)
        elif status == 404:
            failure = EngineNotFound(f"could not {what}: {_quoted(explanation)}", status=status)
        elif status == 409 or _CONFLICT.search(explanation):
            failure = EngineError(f"could not {what}: {_quoted(explanation)}", code="conflict", status=status)
        else:
            failure = EngineError(f"the engine refused to {what}: {_quoted(explanation)}", status=status)
        _raise(failure, exc, keep_cause=pull is None)
    except (
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
        docker.errors.DockerException,
        OSError,
    ) as exc:
        if pull is not None and (pull.expired() or _is_timeout(exc)):
            failure = pull.timed_out()
        elif _is_timeout(exc):
            failure = EngineUnavailable(f"the engine did not answer in time ({what})")
        elif isinstance(exc, requests.exceptions.ConnectionError | OSError):
            failure = EngineUnavailable(f"cannot reach the engine to {what} ({_exception_name(exc)})")
        else:
            failure = EngineError(f"could not {what}: {_exception_name(exc)}")
        _raise(failure, exc, keep_cause=pull is None)


def _raise(failure: EngineError, exc: BaseException, *, keep_cause: bool) -> None:
    if keep_cause:
        raise failure from exc
    _forget(exc)
    raise failure from None


def _forget(exc: BaseException | None) -> None:
    """Drop what an exception chain keeps of a request: tracebacks (frames and their locals), and
    requests' ``request``/``response`` attributes."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        for attribute in ("request", "response"):
            if getattr(exc, attribute, None) is not None:
                with contextlib.suppress(AttributeError):
                    setattr(exc, attribute, None)
        exc = exc.__cause__ or exc.__context__


_CONFLICT = re.compile(r"already (in use|exists)", re.IGNORECASE)


def _explanation(exc: docker.errors.APIError) -> str:
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    if not explanation and exc.response is not None:
        explanation = exc.response.reason
    return str(explanation or f"HTTP {exc.status_code}")


def _is_timeout(exc: BaseException) -> bool:
    """A timeout, also when wrapped: a read timeout while streaming reaches requests as a
    ConnectionError around urllib3's error (itself maybe inside a MaxRetryError)."""
    pending: list[object] = [exc]
    for _ in range(12):
        if not pending:
            break
        current = pending.pop()
        if isinstance(current, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError | TimeoutError):
            return True
        if isinstance(current, BaseException):
            pending.extend(current.args)
            pending.append(getattr(current, "reason", None))
    return False


def _exception_name(exc: BaseException) -> str:
    reason = exc.args[0] if exc.args else None
    inner = getattr(reason, "reason", None) or reason
    if isinstance(inner, BaseException) and inner is not exc:
        return f"{type(exc).__name__}: {type(inner).__name__}"
    return type(exc).__name__


def registry_auth_header(auth: EngineAuth) -> str:
    """The ``X-Registry-Auth`` value: base64url of the JSON auth config (what the SDKs send)."""
    config = {
        "username": auth.username,
        "password": auth.password.get_secret_value(),
        "serveraddress": auth.registry,
    }
    return base64.urlsafe_b64encode(json.dumps(config).encode()).decode()


def _pull(api: docker.APIClient, *, job: _PullJob, connect_timeout: float) -> None:
    """``POST /images/create`` and read the answer to its end.

    The header is built inside the call (it is never a local of a frame that an error could keep),
    and the response is dropped before a refusal is raised."""
    reference = parse_image_reference(job.image)
    repository = f"{reference.registry}/{reference.repository}"
    refusal: str | None = None
    status: int | None = None
    with _translate(f"pull {job.image}", pull=job):
        response = api.post(
            f"{api.base_url}/v{API_VERSION}/images/create",
            params={"fromImage": repository, "tag": reference.digest},
            headers={"X-Registry-Auth": registry_auth_header(job.auth)} if job.auth is not None else {},
            stream=True,
            timeout=(connect_timeout, max(job.deadline - time.monotonic(), 0.001)),
        )
        try:
            if response.status_code >= 400:
                # dockerd refuses before any stream: {"message": ...}
                status = response.status_code
                refusal = _error_message(response)
            else:
                for line in _json_lines(response, job.deadline):
                    error = line.get("error") or (line.get("errorDetail") or {}).get("message")
                    if error:
                        refusal = str(error)  # Podman: 200, and the refusal as the stream's last line
        finally:
            response.close()
            del response
    if refusal is not None:
        raise job.failed(refusal, status)
    if job.expired():
        raise job.timed_out()


def _error_message(response: requests.Response) -> str:
    """The ``message`` of an engine's error answer (at most 64 KiB of it is read)."""
    body = response.raw.read(65536, decode_content=True) or b""
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
        return str(decoded["message"])
    return body.decode("utf-8", "replace").strip() or f"HTTP {response.status_code}"


def _json_lines(response: requests.Response, deadline: float) -> Iterator[dict[str, Any]]:
    """The decoded lines of a JSON progress stream, each read within what is left of ``deadline``."""
    pending = b""
    chunks = response.iter_content(chunk_size=8192)
    while True:
        _shrink_read_timeout(response, deadline)
        chunk = next(chunks, None)
        if chunk is None:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) > _MAX_STREAM_LINE:
            raise EngineError("the engine's progress stream has a line longer than 1 MiB")
        for raw in lines:
            decoded = _decode_json_line(raw)
            if decoded is not None:
                yield decoded
    decoded = _decode_json_line(pending)
    if decoded is not None:
        yield decoded


def _decode_json_line(raw: bytes) -> dict[str, Any] | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _shrink_read_timeout(response: requests.Response, deadline: float) -> None:
    """Each read of the stream may wait only for what is left of the pull's time."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        sock.settimeout(max(deadline - time.monotonic(), 0.001))


_AUTH_WORDS = re.compile(
    r"unauthori[sz]ed|authentication required|no basic auth credentials|invalid username/password|"
    r"incorrect username or password|denied|forbidden|\b401\b|\b403\b",
    re.IGNORECASE,
)
_MISSING_WORDS = re.compile(r"manifest unknown|name unknown|not found|does not exist|\b404\b", re.IGNORECASE)
_TIMEOUT_WORDS = re.compile(r"timeout|timed out|deadline exceeded", re.IGNORECASE)


def _classify_pull(explanation: str, registry: str, repository: str, digest: str) -> PreflightCode:
    """One code for an engine's refusal to pull. The image's own name is cut out first (a
    repository called ``denied`` must not read as a refusal)."""
    text = explanation
    for name in (f"{registry}/{repository}", repository, digest):
        if name:
            text = text.replace(name, " ")
    if _AUTH_WORDS.search(text):
        return PreflightCode.AUTH_FAILED
    if _MISSING_WORDS.search(text):
        return PreflightCode.MANIFEST_NOT_FOUND
    if _TIMEOUT_WORDS.search(text):
        return PreflightCode.TIMEOUT
    return PreflightCode.NETWORK_ERROR


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


def _quoted(text: str) -> str:
    """An engine's words, made printable and kept short (the end, where the cause is)."""
    printable = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(printable) > _MAX_QUOTED:
        printable = "…" + printable[-_MAX_QUOTED:]
    return printable


def _run(api: docker.APIClient, *, spec: ContainerSpec) -> RunningContainer:
    network = _ensure_network(api, spec)
    # Podman holds the host port itself and forwards IPv6 only into IPv6 networks: the port would
    # accept connections and never answer (a TCP probe would call it ready). dockerd's docker-proxy
    # forwards IPv6 to the container's IPv4 address.
    ipv6_into_ipv4 = ipaddress.ip_address(spec.publish_ip).version == 6 and not network.get("EnableIPv6")
    if ipv6_into_ipv4 and _ping(api).product == "podman":
        raise EngineError(
            f"Podman cannot publish on {spec.publish_ip} into the IPv4-only network {spec.network}",
            code="unsupported",
        )
    with _translate(f"create container {spec.name}"):
        created = api.create_container_from_config(container_config(spec), name=spec.name)
    container_id = str(created["Id"])
    try:
        with _translate(f"start container {spec.name}"):
            api.start(container_id)
    except EngineUnavailable:
        raise
    except EngineError as exc:  # the engine answered: the runtime could not start the process
        _discard(api, container_id)
        raise StartFailed(str(exc), status=exc.status) from exc
    attrs = _inspect(api, container_id=container_id)
    binding = None if attrs is None else _published(attrs, spec.port, spec.publish_ip)
    if binding is None:
        reason = "it is gone" if attrs is None else _not_serving(attrs) or "its port is not published"
        logs = _failure_logs_sync(api, container_id)
        _discard(api, container_id)
        raise StartFailed(f"{spec.name}: the container did not stay up: {reason}", logs=logs)
    logger.info("started container %s (%s) on %s", spec.name, container_id[:12], _url(*binding))
    return RunningContainer(id=container_id, name=spec.name, host_port=binding[1], url=_url(*binding))


def container_config(spec: ContainerSpec) -> dict[str, Any]:
    """The Engine API's container configuration for ``spec``: what a container gets (no privileges,
    no host resources, limits, one published port)."""
    port = f"{spec.port}/tcp"
    host_config: dict[str, Any] = {
        "Privileged": False,
        "NetworkMode": spec.network,
        "PortBindings": {port: [{"HostIp": spec.publish_ip, "HostPort": ""}]},
        "PublishAllPorts": False,
        "Binds": [],
        "Mounts": [],
        "VolumesFrom": [],
        "Devices": [],
        "IpcMode": "private",
        "CapDrop": ["ALL"],
        "CapAdd": list(KEPT_CAPABILITIES),
        "SecurityOpt": ["no-new-privileges"],
        "Memory": spec.memory_bytes,
        "MemorySwap": spec.memory_bytes,  # no swap beyond the memory limit
        "NanoCpus": spec.nano_cpus,
        "PidsLimit": PIDS_LIMIT,
        "RestartPolicy": {"Name": spec.restart_policy, "MaximumRetryCount": 0},
        "LogConfig": {"Type": "json-file", "Config": {"max-size": LOG_MAX_SIZE, "max-file": LOG_MAX_FILES}},
    }
    return {
        "Image": spec.image,
        "Labels": dict(spec.labels),
        "ExposedPorts": {port: {}},
        "HostConfig": host_config,
    }


def _ensure_network(api: docker.APIClient, spec: ContainerSpec) -> dict[str, Any]:
    """The project's network: created (bridge, with the project's labels) when missing; an existing
    one must belong to the same project."""
    network = _find_network(api, spec.network)
    if network is None:
        try:
            with _translate(f"create network {spec.network}"):
                api.create_network(
                    spec.network, driver="bridge", labels=spec.network_labels, check_duplicate=True
                )
            logger.info("created network %s", spec.network)
        except EngineError as exc:
            if exc.code != "conflict":  # else: created by a concurrent run, checked below
                raise
        network = _find_network(api, spec.network)
        if network is None:
            raise EngineError(f"network {spec.network} vanished as it was created", code="network_conflict")
    labels = network.get("Labels") or {}
    if labels.get(PROJECT_LABEL) != spec.labels[PROJECT_LABEL]:
        raise EngineError(
            f"network {spec.network} exists and is not this project's network", code="network_conflict"
        )
    return network


def _find_network(api: docker.APIClient, name: str) -> dict[str, Any] | None:
    try:
        with _translate(f"inspect network {name}"):
            network: dict[str, Any] = api.inspect_network(name)
    except EngineNotFound:
        return None
    # dockerd also finds a network by a prefix of its id: only the exact name counts.
    return network if network.get("Name") == name else None


def _published(attrs: Mapping[str, Any], port: int, publish_ip: str) -> tuple[str, int] | None:
    bindings = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp") or []
    for binding in bindings:
        host_port = str(binding.get("HostPort") or "")
        if host_port.isdigit() and _same_ip(str(binding.get("HostIp") or ""), publish_ip):
            return publish_ip, int(host_port)
    return None


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b)
    except ValueError:
        return False


def _url(ip: str, port: int) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}"


def _discard(api: docker.APIClient, container_id: str) -> None:
    """Remove a container that failed to start (best effort: the failure is what gets reported)."""
    try:
        with _translate("remove a container that did not start"):
            api.remove_container(container_id, v=True, force=True)
    except EngineError as exc:
        logger.warning("could not remove container %s after it failed: %s", container_id[:12], exc)


def _failure_logs_sync(api: docker.APIClient, container_id: str) -> tuple[str, ...]:
    try:
        raw = _read_logs(api, container_id=container_id, tail=FAILURE_LOG_LINES, max_bytes=MAX_LOG_BYTES)
    except EngineError:
        return ()
    return bound_lines(clean_log_lines(raw), max_lines=FAILURE_LOG_LINES, max_bytes=FAILURE_LOG_BYTES)


def _inspect(api: docker.APIClient, *, container_id: str) -> dict[str, Any] | None:
    try:
        with _translate("inspect a container"):
            attrs: dict[str, Any] = api.inspect_container(container_id)
    except EngineNotFound:
        return None
    return attrs


def _state(attrs: Mapping[str, Any]) -> ContainerState:
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    running = bool(state.get("Running")) and not state.get("Restarting")
    exit_code = state.get("ExitCode")
    return ContainerState(
        id=str(attrs.get("Id", "")),
        name=str(attrs.get("Name", "")).lstrip("/"),
        labels=MappingProxyType(dict(config.get("Labels") or {})),
        running=running,
        status=str(state.get("Status", "")),
        exit_code=exit_code if isinstance(exit_code, int) else None,
        started_at=_parse_time(state.get("StartedAt")),
        url=_published_url(attrs) if running else None,
        image=str(config.get("Image", "")),
    )


def _published_url(attrs: Mapping[str, Any]) -> str | None:
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for port, bindings in sorted(ports.items()):
        if not port.endswith("/tcp"):
            continue
        for binding in bindings or []:
            host_port = str(binding.get("HostPort") or "")
            ip = str(binding.get("HostIp") or "").strip("[]")
            if host_port.isdigit() and ip:
                return _url(ip, int(host_port))
    return None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value or value.startswith(_ZERO_TIME[:10]):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _not_serving(attrs: Mapping[str, Any] | None) -> str | None:
    """Why a started container is not serving (exited, restarting, gone), or None while it runs.
    ``wait_ready`` follows a fresh ``run``, so any restart means its process already died."""
    if attrs is None:
        return "the container no longer exists"
    state = attrs.get("State") or {}
    exit_code = state.get("ExitCode")
    if state.get("OOMKilled"):
        return "it was killed for exceeding its memory limit"
    if state.get("Restarting") or state.get("Status") == "restarting":
        return f"it exited (code {exit_code}) and is being restarted"
    restarts = attrs.get("RestartCount") or 0
    if restarts > 0:
        # Podman restarts at once: ExitCode is then the new run's (0), not the one that ended.
        return f"it exited and was restarted {restarts} time{'s' if restarts > 1 else ''}"
    if not state.get("Running"):
        return f"it exited with code {exit_code} (status {state.get('Status')})"
    return None


def _list(api: docker.APIClient, *, labels: dict[str, str]) -> list[dict[str, Any]]:
    with _translate("list containers"):
        summaries = api.containers(all=True, filters={"label": [f"{k}={v}" for k, v in labels.items()]})
    found = []
    for summary in summaries:
        attrs = _inspect(api, container_id=str(summary["Id"]))
        if attrs is None:
            continue  # removed since the listing
        have = (attrs.get("Config") or {}).get("Labels") or {}
        if all(have.get(key) == value for key, value in labels.items()):
            found.append(attrs)
    return found


def _remove(api: docker.APIClient, *, container_id: str, grace_s: int) -> None:
    try:
        with _translate("stop a container"):
            api.stop(container_id, timeout=grace_s)
        with _translate("remove a container"):
            api.remove_container(container_id, v=True, force=True)
    except EngineNotFound:
        return
    except EngineError as exc:
        if exc.code == "conflict" and "in progress" in str(exc):
            return  # the engine is already removing it
        raise
    logger.info("removed container %s", container_id[:12])


def _remove_network(api: docker.APIClient, *, name: str) -> None:
    network = _find_network(api, name)
    if network is None:
        return
    if not (network.get("Labels") or {}).get(PROJECT_LABEL):
        raise EngineError(f"network {name} is not a project network", code="network_conflict")
    try:
        # By its name (checked exact above): Podman 4.3 answers 204 to a DELETE by full id while
        # containers are attached, and removes nothing.
        with _translate(f"remove network {name}"):
            api.remove_network(name)
    except EngineNotFound:
        return
    except EngineError as exc:
        # dockerd: 403 "has active endpoints"; Podman: 500 "network is being used".
        if exc.status == 403 or re.search(r"active endpoints|being used|in use", str(exc)):
            raise EngineError(
                f"network {name} still has containers attached", code="network_in_use", status=exc.status
            ) from exc
        raise
    logger.info("removed network %s", name)


def _ping(api: docker.APIClient) -> EngineInfo:
    with _translate("ping the engine"):
        response = api.get(f"{api.base_url}/_ping", timeout=api.timeout)
        response.raise_for_status()
    # "Server: Libpod/4.3.1 (linux)" or "Server: Docker/20.10.24+dfsg1 (linux)"
    server = response.headers.get("Server", "")
    name, _, rest = server.partition("/")
    version = rest.partition(" ")[0]
    if "Libpod-Api-Version" in response.headers or name.lower() == "libpod":
        product = "podman"
        version = response.headers.get("Libpod-Api-Version", version)
    elif name.lower() == "docker":
        product = "docker"
    else:
        raise EngineError(f"the engine is neither Podman nor dockerd (Server: {_quoted(server)})")
    return EngineInfo(product=product, version=version, api_version=response.headers.get("Api-Version", ""))


def _read_logs(api: docker.APIClient, *, container_id: str, tail: int, max_bytes: int) -> bytes:
    """stdout and stderr, interleaved as written, keeping only the last ``max_bytes``."""
    kept = bytearray()
    with _translate("read the logs of a container"):
        frames = api.logs(container_id, stdout=True, stderr=True, tail=tail, stream=True, follow=False)
        for frame in frames:
            kept += frame
            if len(kept) > 2 * max_bytes:
                del kept[:-max_bytes]
    return bytes(kept[-max_bytes:])
