"""guara.deploy.engine on real engines: Podman and dockerd (the `engine` fixture runs each test on both).

Images come from the lab registries (busybox `httpd` apps, a crashing image), pulled with credentials
through the library itself. Every test works in a project of its own (a fresh project label and
network) and removes what it made. Nothing leaves loopback: the engines pull from the lab on
127.0.0.1, the probes dial published loopback ports, and the one name lookup (Podman, inside a
container) is answered by the engine's own DNS on its own bridge (see `test_projects_are_isolated`).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import ipaddress
import json
import os
import re
import socket
import tarfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import SecretStr

from guara.deploy import (
    KEPT_CAPABILITIES,
    PROJECT_LABEL,
    ContainerSpec,
    DockerEngine,
    EngineAuth,
    EngineError,
    EngineUnavailable,
    PullFailed,
    StartFailed,
)
from guara.deploy.engine import (
    MAX_LOG_TAIL,
    PIDS_LIMIT,
    _not_serving,
    _PullJob,
    _state,
    _url,
    registry_auth_header,
)
from tests.deploy.fakes import hanging_registry
from tests.lab import Lab
from tests.lab.apps import APP_V1, APP_V2, CRASH_V1, AppImages, AppRegistry
from tests.lab.engines import EngineHandle, credential_needles, grep_engine_state
from tests.lab.servers import start_https_server
from tests.lab.trust import trust_registries

pytestmark = pytest.mark.anyio

MEMORY = 64 * 1024 * 1024
NANO_CPUS = 500_000_000
APP_PORT = 8080
# Capability numbers (linux/capability.h) of what run() keeps.
CAPABILITY_BITS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "FOWNER": 3,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "NET_BIND_SERVICE": 10,
}


@dataclass
class Project:
    """One test's project: its label, network, and the specs of its containers."""

    engine: DockerEngine
    handle: EngineHandle
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def network(self) -> str:
        return f"gt-{self.id}"

    @property
    def labels(self) -> dict[str, str]:
        return {PROJECT_LABEL: self.id, "app.kubernetes.io/managed-by": "guara", "test": "engine"}

    def spec(self, name: str, image: str, *, port: int = APP_PORT, **labels: str) -> ContainerSpec:
        # No dots in container names: the name lookups of the isolation test stay in the engine.
        return ContainerSpec(
            name=f"gt{self.id}-{name}",
            image=image,
            labels={**self.labels, **labels},
            network=self.network,
            port=port,
            publish_ip="127.0.0.1",
            memory_bytes=MEMORY,
            nano_cpus=NANO_CPUS,
        )

    def cleanup(self) -> None:
        client = self.handle.client()
        try:
            for container in client.containers.list(
                all=True, filters={"label": f"{PROJECT_LABEL}={self.id}"}
            ):
                container.remove(force=True, v=True)
            for network in client.networks.list(names=[self.network]):
                if network.name == self.network:
                    network.remove()
        finally:
            client.close()


def _auth(source: AppRegistry, password: str | None = None) -> EngineAuth:
    return EngineAuth(
        registry=source.host,
        username=source.username,
        password=SecretStr(source.password if password is None else password),
    )


@pytest.fixture
async def lib(engine: EngineHandle) -> Any:
    library = DockerEngine(engine.url, api_timeout_s=30)
    yield library
    await library.aclose()


@pytest.fixture
def project(lib: DockerEngine, engine: EngineHandle) -> Iterator[Project]:
    made = Project(lib, engine)
    yield made
    made.cleanup()


@pytest.fixture(scope="module")
def basic_images(engine: EngineHandle, app_images: AppImages) -> AppRegistry:
    """APP_V1 and CRASH_V1 of the Basic registry, pulled once per engine through the library."""
    source = app_images.basic

    async def pull() -> None:
        library = DockerEngine(engine.url)
        try:
            for image in (APP_V1, CRASH_V1):
                await library.pull(source.ref(image), auth=_auth(source), timeout_s=60)
        finally:
            await library.aclose()

    anyio.run(pull)
    return source


def _fresh_image(lab: Lab, registry: str, what: str) -> str:
    """A tiny image never pulled before (its `Cmd` is /bin/true, which it does not contain)."""
    target = lab.basic if registry == "basic" else lab.token
    repo_tag = f"acme/{what}-{os.getpid()}-{time.monotonic_ns()}:v1"
    digest = target.push_image(repo_tag)
    return f"{target.host}/{repo_tag.rpartition(':')[0]}@{digest}"


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=5, trust_env=False)


def _inspect(handle: EngineHandle, container_id: str) -> dict[str, Any]:
    client = handle.client()
    try:
        attrs: dict[str, Any] = client.api.inspect_container(container_id)
        return attrs
    finally:
        client.close()


def _exec(handle: EngineHandle, container_id: str, command: list[str]) -> tuple[int, str]:
    """Run ``command`` in the container: its exit code, and its output (stdout and stderr).

    The output goes to a file in the container, read back through the archive API: an exec's
    attached stream sometimes loses a short command's output under load (moby/moby#27289; seen here
    on Podman as an empty `cat`), which would also let an "output does not contain" check pass."""
    out = f"/.exec-{uuid.uuid4().hex}"
    client = handle.client()
    try:
        container = client.containers.get(container_id)
        code, _ = container.exec_run(["sh", "-c", f'"$@" > {out} 2>&1', "sh", *command])
        stream, _stat = container.get_archive(out)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.extractfile(archive.getmembers()[0])
            assert member is not None
            output = member.read()
        container.exec_run(["rm", "-f", out])
        return int(code), output.decode(errors="replace")
    finally:
        client.close()


# -- the engine answers ------------------------------------------------------------------------------


async def test_ping_names_the_engine(lib: DockerEngine, engine: EngineHandle) -> None:
    info = await lib.ping()
    assert info.product == engine.name
    assert info.version == engine.version
    assert info.api_version == "1.41"


@pytest.mark.parametrize("registry", ["basic", "token"])
async def test_pull_run_serve_and_remove(
    lib: DockerEngine, project: Project, engine: EngineHandle, app_images: AppImages, registry: str
) -> None:
    source = app_images.basic if registry == "basic" else app_images.token
    for image in (APP_V1, APP_V2):
        await lib.pull(source.ref(image), auth=_auth(source), timeout_s=60)

    first = await lib.run(project.spec("web", source.ref(APP_V1), service="web"))
    assert first.url == f"http://127.0.0.1:{first.host_port}"
    await lib.wait_ready(first, health_path=None, timeout_s=20)  # TCP probe
    assert _get(first.url).text == app_images.bodies[APP_V1]

    # A second container in the same project network, ready by HTTP.
    second = await lib.run(project.spec("api", source.ref(APP_V2), service="api"))
    await lib.wait_ready(second, health_path="/", timeout_s=20)
    assert _get(second.url).text == app_images.bodies[APP_V2]
    assert second.host_port != first.host_port

    state = await lib.inspect(first.id)
    assert state is not None
    assert (state.id, state.name, state.running, state.status) == (first.id, first.name, True, "running")
    assert state.url == first.url and state.exit_code == 0
    assert state.image == source.ref(APP_V1)
    # The image's own labels are merged in (the lab images say lab=guara); the spec's keys win.
    assert dict(state.labels) == {"lab": "guara", **project.labels, "service": "web"}
    assert state.started_at is not None and state.started_at.tzinfo is UTC
    assert abs(datetime.now(UTC) - state.started_at) < timedelta(minutes=1)

    listed = await lib.list_containers({PROJECT_LABEL: project.id})
    assert {s.id for s in listed} == {first.id, second.id}
    assert [s.id for s in await lib.list_containers({PROJECT_LABEL: project.id, "service": "api"})] == [
        second.id
    ]

    client = engine.client()
    try:
        network = client.api.inspect_network(project.network)
    finally:
        client.close()
    assert network["Labels"] == {PROJECT_LABEL: project.id, "app.kubernetes.io/managed-by": "guara"}

    for running in (first, second):
        await lib.remove(running.id, grace_s=5)
        assert await lib.inspect(running.id) is None
    await lib.remove(first.id)  # already gone: fine
    assert await lib.list_containers({PROJECT_LABEL: project.id}) == []
    await lib.remove_network(project.network)
    await lib.remove_network(project.network)  # already gone: fine


# -- pull failures -----------------------------------------------------------------------------------


def _secrets_reachable(exc: BaseException, needles: tuple[bytes, ...]) -> list[str]:
    """Where a secret can still be found from a raised error: its text, its chain, and the locals of
    the library's frames on its traceback (what an error reporter capturing locals would send)."""
    found = []
    text = "".join(traceback.format_exception(exc)) + repr(exc)
    if any(needle in text.encode() for needle in needles):
        found.append("message or traceback text")
    if exc.__cause__ is not None:
        found.append("a chained cause")
    context = exc.__context__
    while context is not None:
        if context.__traceback__ is not None:
            found.append(f"the traceback of a context {type(context).__name__}")
        context = context.__context__

    def walk(value: object, depth: int) -> bool:
        if isinstance(value, str | bytes):
            data = value.encode() if isinstance(value, str) else value
            return any(needle in data for needle in needles)
        if depth == 0:
            return False
        if isinstance(value, dict):
            return any(walk(k, depth - 1) or walk(v, depth - 1) for k, v in value.items())
        if isinstance(value, list | tuple | set):
            return any(walk(v, depth - 1) for v in value)
        for attribute in ("headers", "request", "body"):
            inner = getattr(value, attribute, None)
            if inner is not None and not callable(inner) and walk(inner, depth - 1):
                return True
        return walk(repr(value), 0)

    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_globals.get("__name__", "").startswith("guara."):
            for name, value in frame.f_locals.items():
                if walk(value, 4):
                    found.append(f"local {name!r} of {frame.f_code.co_name}")
        tb = tb.tb_next
    return found


@pytest.mark.parametrize("registry", ["basic", "token"])
@pytest.mark.parametrize("password", ["wrong", None], ids=["wrong-password", "no-credentials"])
async def test_refused_pull_is_auth_failed(
    lib: DockerEngine,
    engine: EngineHandle,
    app_images: AppImages,
    lab: Lab,
    registry: str,
    password: str | None,
) -> None:
    """A digest never pulled before (dockerd would not ask the registry again for one it holds)."""
    source = app_images.basic if registry == "basic" else app_images.token
    ref = _fresh_image(lab, registry, "refused")
    wrong = f"{source.password}-wrong"
    auth = None if password is None else _auth(source, wrong)
    with pytest.raises(PullFailed) as raised:
        await lib.pull(ref, auth=auth, timeout_s=30)
    assert raised.value.code == "auth_failed", str(raised.value)
    assert str(raised.value).startswith(f"the engine could not pull {ref}: ")
    if auth is not None:
        needles = (*credential_needles(source.username, wrong), registry_auth_header(auth).encode())
        assert _secrets_reachable(raised.value, needles) == []


async def test_missing_digest_is_manifest_not_found(lib: DockerEngine, app_images: AppImages) -> None:
    source = app_images.token
    ref = source.ref(APP_V1).rpartition("@")[0] + "@sha256:" + "0" * 64
    with pytest.raises(PullFailed) as raised:
        await lib.pull(ref, auth=_auth(source), timeout_s=30)
    assert raised.value.code == "manifest_not_found", str(raised.value)
    assert "manifest unknown" in str(raised.value)


async def test_pull_from_a_hanging_registry_times_out(
    lib: DockerEngine, lab: Lab, app_images: AppImages
) -> None:
    release = threading.Event()
    with start_https_server(hanging_registry(release), ca=lab.ca) as hanging:
        with trust_registries([hanging.host], lab.ca.cert_pem.bytes()):
            started = time.monotonic()
            try:
                with pytest.raises(PullFailed) as raised:
                    await lib.pull(f"{hanging.host}/acme/app@sha256:{'3' * 64}", auth=None, timeout_s=2)
            finally:
                release.set()
    assert raised.value.code == "timeout"
    assert 2 <= time.monotonic() - started < 4
    # The library is still usable: the abandoned stream did not poison its clients.
    assert (await lib.ping()).api_version == "1.41"


# -- engines that do not answer (no engine fixture: sockets made here) ---------------------------------


async def test_absent_or_silent_socket_is_engine_unavailable(tmp_path: Path) -> None:
    missing = DockerEngine(f"unix://{tmp_path}/absent.sock", api_timeout_s=5)
    refusing_path = tmp_path / "refusing.sock"
    refusing = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    refusing.bind(str(refusing_path))  # bound, never listening: like an engine that died
    silent_path = tmp_path / "silent.sock"
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(silent_path))
    silent.listen(8)  # accepts (in the backlog) and never answers: a hung engine
    try:
        for library in (missing, DockerEngine(f"unix://{refusing_path}", api_timeout_s=5)):
            started = time.monotonic()
            with pytest.raises(EngineUnavailable) as raised:
                await library.ping()
            assert time.monotonic() - started < 1
            assert raised.value.code == "engine_unavailable"
            with pytest.raises(EngineUnavailable):
                await library.inspect("anything")
            await library.aclose()
        hung = DockerEngine(f"unix://{silent_path}", api_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(EngineUnavailable):
            await hung.list_containers({PROJECT_LABEL: "x"})
        assert 0.5 <= time.monotonic() - started < 2
        await hung.aclose()
    finally:
        refusing.close()
        silent.close()


def test_only_unix_sockets() -> None:
    for url in ("tcp://127.0.0.1:2375", "http://127.0.0.1:2375", "unix://relative.sock", ""):
        with pytest.raises(ValueError):
            DockerEngine(url)


# -- containers that do not serve ---------------------------------------------------------------------


async def test_crash_image_is_start_failed_with_its_logs(
    lib: DockerEngine, project: Project, basic_images: AppRegistry, app_images: AppImages
) -> None:
    async def start() -> None:
        # Either run() sees it exit, or wait_ready() sees it exit or restart: both are StartFailed.
        running = await lib.run(project.spec("crash", basic_images.ref(CRASH_V1)))
        await lib.wait_ready(running, health_path=None, timeout_s=20)

    with pytest.raises(StartFailed) as raised:
        await start()
    failure = raised.value
    assert failure.code == "start_failed"
    assert "exited" in str(failure)
    assert 0 < len(failure.logs) <= 50 and sum(len(line) + 1 for line in failure.logs) <= 8192
    # The lines of one run, maybe several (the restart policy starts it again and again).
    for line in (*app_images.crash_stdout, *app_images.crash_stderr):
        assert line in failure.logs


async def test_a_port_nobody_listens_on_is_not_ready(
    lib: DockerEngine, project: Project, engine: EngineHandle, basic_images: AppRegistry
) -> None:
    """The app listens on 8080; publish 9999 instead. On dockerd, docker-proxy accepts the connection
    (and closes it at once): that must not count as ready."""
    running = await lib.run(project.spec("deaf", basic_images.ref(APP_V1), port=9999))
    if engine.name == "docker":
        with socket.create_connection(("127.0.0.1", running.host_port), timeout=5) as probe:
            probe.settimeout(2)
            assert probe.recv(1) == b""  # accepted by docker-proxy, then closed by it
    else:
        with pytest.raises(ConnectionRefusedError):  # netavark's DNAT: the container refuses
            socket.create_connection(("127.0.0.1", running.host_port), timeout=5)
    started = time.monotonic()
    with pytest.raises(StartFailed) as raised:
        await lib.wait_ready(running, health_path=None, timeout_s=3)
    assert 3 <= time.monotonic() - started < 5
    assert "not ready within 3 s" in str(raised.value)
    assert ("closed it at once" if engine.name == "docker" else "refused") in str(raised.value)
    with pytest.raises(StartFailed) as raised:
        await lib.wait_ready(running, health_path="/", timeout_s=0.5)
    assert "not ready within 0.5 s (GET /: " in str(raised.value)
    state = await lib.inspect(running.id)  # up all along (its app serves 8080, as the other tests see)
    assert state is not None and state.running


async def test_an_image_that_cannot_start_leaves_nothing(
    lib: DockerEngine, project: Project, app_images: AppImages, lab: Lab
) -> None:
    ref = _fresh_image(lab, "basic", "nocmd")  # its Cmd, /bin/true, is not in the image
    await lib.pull(ref, auth=_auth(app_images.basic), timeout_s=30)
    with pytest.raises(StartFailed) as raised:
        await lib.run(project.spec("nocmd", ref))
    assert "/bin/true" in str(raised.value)
    assert await lib.list_containers({PROJECT_LABEL: project.id}) == []


# -- logs -----------------------------------------------------------------------------------------------

_NOISY = r"""
i=0; while [ $i -lt 1200 ]; do echo "line $i"; i=$((i+1)); done
printf 'red \033[31mALERT\033[0m done\r\n'
printf 'forged\rline 2025-01-01 INFO admin logged in\n'
sleep 0.1; printf 'title \033]0;pwned\007 bell\a tab\there\n' >&2; sleep 0.1
printf 'bad byte \377 end\n'
printf 'last\n'
"""


async def test_logs_are_bounded_and_cleaned(
    lib: DockerEngine, project: Project, engine: EngineHandle, basic_images: AppRegistry
) -> None:
    client = engine.client()
    try:
        container = client.containers.create(
            basic_images.ref(APP_V1), ["/bin/sh", "-c", _NOISY], labels=project.labels
        )
        container.start()
        assert container.wait(timeout=20)["StatusCode"] == 0
    finally:
        client.close()
    last = await lib.logs(container.id, tail=5)
    assert last == [
        "red ALERT done",
        "forgedline 2025-01-01 INFO admin logged in",
        "title  bell tab\there",
        "bad byte \ufffd end",
        "last",
    ]
    assert await lib.logs(container.id, tail=0) == []
    everything = await lib.logs(container.id, tail=100_000)
    assert len(everything) == MAX_LOG_TAIL
    assert everything[-6:] == ["line 1199", *last]
    assert all(not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", line) for line in everything)


async def test_logs_keep_the_last_bytes_of_a_huge_line(
    lib: DockerEngine, project: Project, engine: EngineHandle, basic_images: AppRegistry
) -> None:
    script = (
        "s=0123456789abcdef; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do s=$s$s; done; echo $s; echo end"
    )
    client = engine.client()
    try:
        container = client.containers.create(
            basic_images.ref(APP_V1), ["/bin/sh", "-c", script], labels=project.labels
        )
        container.start()
        assert container.wait(timeout=20)["StatusCode"] == 0
    finally:
        client.close()
    lines = await lib.logs(container.id, tail=10)
    assert lines[-1] == "end"
    assert len("".join(lines)) <= 256 * 1024  # 512 KiB were written
    if engine.name == "docker":
        # json-file keeps a long line as 16 KiB pieces, and tail counts pieces: the line's end.
        assert len(lines) == 2 and 0 < len(lines[0]) < 512 * 1024
        assert lines[0].endswith("0123456789abcdef")
    else:
        # Podman's tail keeps only the empty last piece of a long line.
        assert lines == ["", "end"]


# -- isolation and lock-down ------------------------------------------------------------------------------


async def test_security_options_are_set(
    lib: DockerEngine,
    project: Project,
    engine: EngineHandle,
    basic_images: AppRegistry,
    app_images: AppImages,
) -> None:
    spec = project.spec("locked", basic_images.ref(APP_V1))
    running = await lib.run(spec)
    await lib.wait_ready(running, health_path="/", timeout_s=20)
    assert _get(running.url).text == app_images.bodies[APP_V1]  # busybox httpd runs as root on 8080

    attrs = _inspect(engine, running.id)
    host = attrs["HostConfig"]
    assert host["Privileged"] is False
    assert not host.get("Binds") and attrs["Mounts"] == []
    assert not host.get("VolumesFrom") and not host.get("Devices")
    assert host["PidMode"] in ("", "private") and host["IpcMode"] != "host"
    assert host["Memory"] == MEMORY and host["MemorySwap"] == MEMORY
    assert host["NanoCpus"] == NANO_CPUS and host["PidsLimit"] == PIDS_LIMIT
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["Config"]["Labels"] == {"lab": "guara", **spec.labels}
    assert list(attrs["NetworkSettings"]["Networks"]) == [project.network]
    ports = attrs["NetworkSettings"]["Ports"]
    assert ports == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(running.host_port)}]}
    if engine.name == "docker":
        assert host["NetworkMode"] == project.network
        assert host["CapDrop"] == ["ALL"] and sorted(host["CapAdd"]) == sorted(KEPT_CAPABILITIES)
        assert host["IpcMode"] == "private"
        assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
    else:
        # Podman's compat inspect reports every bridge network as "bridge", and the capabilities as
        # the defaults it dropped; the kernel's view below is what counts.
        assert host["NetworkMode"] == "bridge"
        assert "NET_RAW" in host["CapDrop"]

    # What the kernel says about the container's PID 1.
    code, status = _exec(engine, running.id, ["cat", "/proc/1/status"])
    assert code == 0
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    expected = sum(1 << CAPABILITY_BITS[name] for name in KEPT_CAPABILITIES)
    assert int(fields["CapEff"], 16) == expected and int(fields["CapBnd"], 16) == expected
    assert fields["NoNewPrivs"].strip() == "1"


async def test_projects_are_isolated(
    lib: DockerEngine, engine: EngineHandle, basic_images: AppRegistry, app_images: AppImages
) -> None:
    """Each project's containers sit on their project's network only. On Podman, a container cannot
    resolve another project's container by name (and can resolve its own project's)."""
    a, b = Project(lib, engine), Project(lib, engine)
    try:
        a_web = await lib.run(a.spec("web", basic_images.ref(APP_V1)))
        a_probe = await lib.run(a.spec("probe", basic_images.ref(APP_V1)))
        b_web = await lib.run(b.spec("web", basic_images.ref(APP_V2)))
        for running, project in ((a_web, a), (a_probe, a), (b_web, b)):
            networks = _inspect(engine, running.id)["NetworkSettings"]["Networks"]
            assert list(networks) == [project.network], running.name
        client = engine.client()
        try:
            network_a = client.api.inspect_network(a.network)
            assert network_a["Labels"][PROJECT_LABEL] == a.id
            assert set(network_a["Containers"]) == {a_web.id, a_probe.id}
            assert set(client.api.inspect_network(b.network)["Containers"]) == {b_web.id}
        finally:
            client.close()
        if engine.name == "docker":
            # dockerd's embedded DNS forwards names it does not know to the host's resolvers, which
            # are off this machine: no lookup is made there (the inspect data above is the proof).
            return
        await lib.wait_ready(a_web, health_path="/", timeout_s=20)
        await lib.wait_ready(b_web, health_path="/", timeout_s=20)
        # Podman's networks made through the API have DNS on (aardvark-dns on the bridge's gateway).
        # The probe asks only that gateway (its resolv.conf also lists the host's resolver, off this
        # machine: rewritten first). aardvark-dns answers NXDOMAIN itself, without forwarding, for a
        # name ending in dns.podman or a single label: the lookups below never leave the bridge.
        gateway = network_a["IPAM"]["Config"][0]["Gateway"]
        subnet = ipaddress.IPv4Network(network_a["IPAM"]["Config"][0]["Subnet"])
        assert subnet.subnet_of(ipaddress.IPv4Network(engine.address_pool))  # the engine's own bridge
        resolv = f"search dns.podman\nnameserver {gateway}\n"
        code, _ = _exec(engine, a_probe.id, ["sh", "-c", f"printf '{resolv}' > /etc/resolv.conf"])
        assert code == 0
        assert _exec(engine, a_probe.id, ["cat", "/etc/resolv.conf"]) == (0, resolv)
        assert "." not in a_web.name and "." not in b_web.name
        # (busybox wget without -T: this build crashes on -T.)
        code, output = _exec(engine, a_probe.id, ["wget", "-q", "-O", "-", f"http://{a_web.name}:8080/"])
        assert (code, output) == (0, app_images.bodies[APP_V1])
        code, output = _exec(engine, a_probe.id, ["wget", "-q", "-O", "-", f"http://{b_web.name}:8080/"])
        assert code != 0 and "bad address" in output
    finally:
        a.cleanup()
        b.cleanup()


async def test_networks_belong_to_their_project(
    lib: DockerEngine, project: Project, engine: EngineHandle, basic_images: AppRegistry
) -> None:
    running = await lib.run(project.spec("web", basic_images.ref(APP_V1)))
    with pytest.raises(EngineError) as raised:
        await lib.remove_network(project.network)
    assert raised.value.code == "network_in_use"

    # Another project naming this network is refused (it would join the first project's network).
    intruder = Project(lib, engine)
    stolen = dataclasses.replace(intruder.spec("x", basic_images.ref(APP_V1)), network=project.network)
    with pytest.raises(EngineError) as raised:
        await lib.run(stolen)
    assert raised.value.code == "network_conflict"

    # A network guara did not make is neither joined nor removed.
    client = engine.client()
    foreign = client.networks.create(f"foreign-{project.id}", driver="bridge")
    try:
        spec = dataclasses.replace(project.spec("y", basic_images.ref(APP_V1)), network=foreign.name)
        with pytest.raises(EngineError) as raised:
            await lib.run(spec)
        assert raised.value.code == "network_conflict"
        with pytest.raises(EngineError) as raised:
            await lib.remove_network(foreign.name)
        assert raised.value.code == "network_conflict"
    finally:
        foreign.remove()
        client.close()
    assert [s.id for s in await lib.list_containers({PROJECT_LABEL: project.id})] == [running.id]
    # A name already in use is a conflict.
    with pytest.raises(EngineError) as raised:
        await lib.run(project.spec("web", basic_images.ref(APP_V1)))
    assert raised.value.code == "conflict"


async def test_publishing_on_ipv6(
    lib: DockerEngine,
    project: Project,
    engine: EngineHandle,
    basic_images: AppRegistry,
    app_images: AppImages,
) -> None:
    spec = dataclasses.replace(project.spec("v6", basic_images.ref(APP_V1)), publish_ip="::1")
    if engine.name == "podman":
        # Podman would hold [::1]:port open and forward nothing into the IPv4 network.
        with pytest.raises(EngineError) as raised:
            await lib.run(spec)
        assert raised.value.code == "unsupported"
        assert await lib.list_containers({PROJECT_LABEL: project.id}) == []
        return
    running = await lib.run(spec)
    assert running.url == f"http://[::1]:{running.host_port}"
    await lib.wait_ready(running, health_path="/", timeout_s=20)
    assert _get(running.url).text == app_images.bodies[APP_V1]
    state = await lib.inspect(running.id)
    assert state is not None and state.url == running.url


# -- credentials --------------------------------------------------------------------------------------------


async def test_credentials_leave_no_trace(
    lib: DockerEngine, project: Project, engine: EngineHandle, app_images: AppImages, lab: Lab
) -> None:
    """After pulls with credentials (a fresh digest, so the registry is really asked) and a run,
    neither the engine's files nor any container's inspect data hold the password in any form."""
    auths = []
    for registry, source in (("basic", app_images.basic), ("token", app_images.token)):
        ref = _fresh_image(lab, registry, "canary")
        auth = _auth(source)
        await lib.pull(ref, auth=auth, timeout_s=30)
        auths.append(auth)
    await lib.pull(app_images.token.ref(APP_V1), auth=_auth(app_images.token), timeout_s=30)
    running = await lib.run(project.spec("canary", app_images.token.ref(APP_V1)))
    await lib.wait_ready(running, health_path=None, timeout_s=20)

    source = app_images.basic
    needles = (
        *credential_needles(source.username, source.password),
        *(registry_auth_header(a).encode() for a in auths),
    )
    assert grep_engine_state(engine, needles) == []
    client = engine.client()
    try:
        for container in client.containers.list(all=True):
            attrs = json.dumps(client.api.inspect_container(container.id)).encode()
            assert not any(needle in attrs for needle in needles), container.name
        code, environment = _exec(engine, running.id, ["env"])
        assert code == 0 and source.password not in environment
    finally:
        client.close()


async def test_stored_docker_credentials_are_never_sent(
    engine: EngineHandle, app_images: AppImages, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK would send credentials from ~/.docker/config.json (or $DOCKER_CONFIG) with any pull
    that has none of its own: an anonymous pull through the library sends nothing."""
    source = app_images.basic
    pair = base64.b64encode(f"{source.username}:{source.password}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {source.host: {"auth": pair}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    library = DockerEngine(engine.url)
    try:
        with pytest.raises(PullFailed) as raised:
            await library.pull(_fresh_image(lab, "basic", "stored"), auth=None, timeout_s=30)
        assert raised.value.code == "auth_failed"
    finally:
        await library.aclose()


async def test_concurrent_calls(lib: DockerEngine, project: Project, basic_images: AppRegistry) -> None:
    running = await lib.run(project.spec("busy", basic_images.ref(APP_V1)))
    results: list[object] = []

    async def call(i: int) -> None:
        if i % 3 == 0:
            results.append((await lib.ping()).api_version)
        elif i % 3 == 1:
            state = await lib.inspect(running.id)
            results.append(state.id if state else None)
        else:
            results.append(len(await lib.list_containers({PROJECT_LABEL: project.id})))

    async with anyio.create_task_group() as group:
        for i in range(24):
            group.start_soon(call, i)
    assert sorted(map(str, results)) == sorted(["1.41"] * 8 + [running.id] * 8 + ["1"] * 8)


# -- the library's own decisions, without an engine ---------------------------------------------------------

_R = "127.0.0.1:5001/acme/app"
_D = "sha256:" + "ab" * 32
_ZERO = "0001-01-01T00:00:00Z"
_PODMAN = f"initializing source docker://{_R}@{_D}: "
_MANIFEST = f"reading manifest {_D} in {_R}: "
_PING = 'pinging container registry 127.0.0.1:5001: Get "https://127.0.0.1:5001/v2/": '
_GET = f'Get "https://127.0.0.1:5001/v2/acme/app/manifests/{_D}": '
_DENIED = "denied: requested access to the resource is denied"
OBSERVED_REFUSALS = [
    # Podman (200, then an error line)
    (_PODMAN + _MANIFEST + "unauthorized: authentication required", "auth_failed"),
    (_PODMAN + "unable to retrieve auth token: invalid username/password: unauthorized", "auth_failed"),
    (_PODMAN + _MANIFEST + f"errors:\n{_DENIED}\nunauthorized: authentication required\n", "auth_failed"),
    (_PODMAN + _MANIFEST + "manifest unknown: manifest unknown", "manifest_not_found"),
    (_PODMAN + _PING + "dial tcp 127.0.0.1:5001: connect: connection refused", "network_error"),
    (_PODMAN + _PING + "x509: certificate signed by unknown authority", "network_error"),
    (_PODMAN + _PING + "net/http: TLS handshake timeout", "timeout"),
    # dockerd (404 or 500, {"message": ...})
    ("unauthorized: authentication required", "auth_failed"),
    (_GET + "unauthorized", "auth_failed"),
    (_GET + "no basic auth credentials", "auth_failed"),
    (
        f"pull access denied for {_R}, repository does not exist or may require 'docker login': {_DENIED}",
        "auth_failed",
    ),
    (f"manifest for {_R}@{_D} not found: manifest unknown: manifest unknown", "manifest_not_found"),
    (
        'Get "http://127.0.0.1:5001/v2/": dial tcp 127.0.0.1:5001: connect: connection refused',
        "network_error",
    ),
    (_GET + "proxyconnect tcp: dial tcp 127.0.0.1:9: connect: connection refused", "network_error"),
]


def _job(image: str = f"{_R}@{_D}", password: str = 'pa$$ "wörd"') -> _PullJob:
    auth = EngineAuth(registry="127.0.0.1:5001", username="alice", password=SecretStr(password))
    return _PullJob(image=image, auth=auth, deadline=time.monotonic() + 10)


@pytest.mark.parametrize(("message", "code"), OBSERVED_REFUSALS)
def test_pull_refusals_map_to_preflight_codes(message: str, code: str) -> None:
    failure = _job().failed(message, None)
    assert failure.code == code
    assert str(failure).startswith(f"the engine could not pull {_R}@{_D}: ")
    assert "\n" not in str(failure)


def test_the_image_name_does_not_decide_the_code() -> None:
    image = f"127.0.0.1:5001/acme/denied-unauthorized@{_D}"
    message = f"manifest for {image} not found: manifest unknown: manifest unknown"
    assert _job(image).failed(message, 404).code == "manifest_not_found"


def test_refusals_never_quote_the_password() -> None:
    job = _job()
    assert job.auth is not None
    password = job.auth.password.get_secret_value()
    header = registry_auth_header(job.auth)
    pair = base64.b64encode(f"alice:{password}".encode()).decode()
    message = f"echo {password} {json.dumps(password)} {pair} {header} end"
    failure = job.failed(message, 500)
    needles = (*credential_needles("alice", password), header.encode())
    assert not any(needle in str(failure).encode() for needle in needles), str(failure)
    assert str(failure).endswith(" end") and "[REDACTED]" in str(failure)
    assert password not in repr(job) and password not in repr(job.auth)
    decoded = json.loads(base64.urlsafe_b64decode(header))
    assert decoded == {"username": "alice", "password": password, "serveraddress": "127.0.0.1:5001"}


async def test_credentials_for_another_registry_are_refused() -> None:
    library = DockerEngine("unix:///nonexistent/engine.sock")
    auth = EngineAuth(registry="ghcr.io", username="alice", password=SecretStr("x"))
    with pytest.raises(ValueError, match="not for the image's registry"):
        await library.pull(f"{_R}@{_D}", auth=auth, timeout_s=5)
    with pytest.raises(ValueError, match="pinned by digest"):
        await library.pull(f"{_R}:v1", auth=None, timeout_s=5)
    await library.aclose()


def _spec(**changes: Any) -> ContainerSpec:
    values: dict[str, Any] = {
        "name": "svc-web",
        "image": f"{_R}@{_D}",
        "labels": {PROJECT_LABEL: "p1"},
        "network": "guara-p1",
        "port": 8080,
        "publish_ip": "127.0.0.1",
        "memory_bytes": MEMORY,
        "nano_cpus": NANO_CPUS,
    }
    return ContainerSpec(**{**values, **changes})


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "-web"},
        {"name": "a/b"},
        {"name": "x" * 200},
        {"image": f"{_R}:v1"},
        {"image": f"{_R}:v1@{_D}"},
        {"image": "not a reference"},
        {"network": "host"},
        {"network": "bridge"},
        {"network": "Host"},
        {"network": "none"},
        {"network": "container:abc"},
        {"labels": {}},
        {"labels": {"other": "x"}},
        {"port": 0},
        {"port": 70000},
        {"publish_ip": "0.0.0.0"},
        {"publish_ip": "::"},
        {"publish_ip": "localhost"},
        {"memory_bytes": 1024},
        {"nano_cpus": 0},
        {"restart_policy": "sometimes"},
    ],
)
def test_specs_are_checked(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _spec(**changes)


def test_spec_labels_are_copied_and_the_network_gets_the_project_keys() -> None:
    labels = {PROJECT_LABEL: "p1", "app.kubernetes.io/managed-by": "guara", "service": "web"}
    spec = _spec(labels=labels)
    labels["service"] = "changed"
    assert spec.labels["service"] == "web"
    assert spec.network_labels == {PROJECT_LABEL: "p1", "app.kubernetes.io/managed-by": "guara"}
    assert _spec(publish_ip="::1").publish_ip == "::1"
    assert _url("::1", 32768) == "http://[::1]:32768"


def test_states_as_the_engines_report_them() -> None:
    podman_between_restarts = {
        "Id": "c1",
        "Name": "/web",
        "RestartCount": 4,
        "State": {
            "Status": "stopped",
            "Running": False,
            "ExitCode": 3,
            "StartedAt": "2026-12-01T12:41:21.5045Z",
        },
        "Config": {"Image": f"{_R}@{_D}", "Labels": {PROJECT_LABEL: "p1"}},
        "NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41611"}]}},
    }
    state = _state(podman_between_restarts)
    assert (state.name, state.running, state.status, state.exit_code, state.url) == (
        "web",
        False,
        "stopped",
        3,
        None,
    )
    assert state.started_at == datetime(2026, 12, 1, 12, 41, 21, 504500, tzinfo=UTC)
    assert _not_serving(podman_between_restarts) == "it exited and was restarted 4 times"

    dockerd_restarting = {
        "Id": "c2",
        "Name": "/web",
        "RestartCount": 0,
        "State": {
            "Status": "restarting",
            "Running": True,
            "Restarting": True,
            "ExitCode": 3,
            "StartedAt": _ZERO,
        },
        "Config": {"Image": f"{_R}@{_D}", "Labels": None},
        "NetworkSettings": {"Ports": {}},
    }
    state = _state(dockerd_restarting)
    assert (state.running, state.status, state.started_at, dict(state.labels)) == (
        False,
        "restarting",
        None,
        {},
    )
    assert _not_serving(dockerd_restarting) == "it exited (code 3) and is being restarted"

    running: dict[str, Any] = {
        "Id": "c3",
        "Name": "/web",
        "State": {
            "Status": "running",
            "Running": True,
            "ExitCode": 0,
            "StartedAt": "2026-12-01T14:41:18.386816245+02:00",
        },
        "Config": {"Image": f"{_R}@{_D}", "Labels": {}},
        "NetworkSettings": {"Ports": {"80/tcp": None, "8080/tcp": [{"HostIp": "::1", "HostPort": "32768"}]}},
    }
    state = _state(running)
    assert state.running and state.url == "http://[::1]:32768"
    assert state.started_at == datetime(2026, 12, 1, 12, 41, 18, 386816, tzinfo=UTC)
    assert _not_serving(running) is None
    assert _not_serving(None) == "the container no longer exists"
    oom = {**running, "State": {**running["State"], "Running": False, "OOMKilled": True, "ExitCode": 137}}
    assert _not_serving(oom) == "it was killed for exceeding its memory limit"
