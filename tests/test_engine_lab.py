"""The engine lab is what it says: real Podman and dockerd, private images from the lab registries.

Every test drives the engine through the Docker Engine API with the Docker SDK, as the runtime will.
What the engines answer (auth errors, logs, trust) is asserted as observed, per engine: the runtime
can rely on these shapes.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import trustme
from docker.models.containers import Container

from tests.lab import Lab
from tests.lab.apps import APP_MULTI_V1, APP_V1, APP_V2, CRASH_V1, AppImages, AppRegistry
from tests.lab.engines import (
    ENGINE_NAMES,
    EngineHandle,
    EngineName,
    StopReport,
    credential_needles,
    engine_problem,
    grep_engine_state,
    scan_engine_state,
    start_engine,
)
from tests.lab.leases import (
    cgroups_of,
    claim,
    link_exists,
    mounts_under,
    processes_under,
    shim_socket,
    sweep,
)
from tests.lab.trust import (
    CERTS_D_ROOTS,
    CONTAINERS_CERTS_D,
    DOCKER_CERTS_D,
    certs_dir_name,
    trust_registries,
)

_DEADLINE_S = 20.0
_REPO_ROOT = Path(__file__).resolve().parents[1]


# -- helpers -----------------------------------------------------------------------------------------


def _registry(app_images: AppImages, name: str) -> AppRegistry:
    return app_images.basic if name == "basic" else app_images.token


def _pull_stream(engine: EngineHandle, ref: str, auth: dict[str, str] | None) -> list[dict[str, Any]]:
    """`POST /images/create` for a digest reference; the decoded stream (raises APIError on non-200)."""
    repository, _, digest = ref.partition("@")
    with docker.APIClient(base_url=engine.url, version=engine.api_version, timeout=60) as api:
        return list(api.pull(repository, tag=digest, stream=True, decode=True, auth_config=auth))


def _stream_error(lines: list[dict[str, Any]]) -> str | None:
    errors = [str(line["error"]) for line in lines if "error" in line]
    return errors[-1] if errors else None


def _published_port(container: Container, port: str = "8080/tcp") -> int:
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"][port]
    assert bindings[0]["HostIp"] == "127.0.0.1"
    return int(bindings[0]["HostPort"])


def _get_body(port: int, *, deadline_s: float = _DEADLINE_S) -> str:
    """GET / on 127.0.0.1:port until it answers 200 (the server needs a moment), within a deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2.0, trust_env=False)
            if response.status_code == 200:
                return response.text
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"127.0.0.1:{port} did not answer 200 within {deadline_s} s")
        time.sleep(0.02)


def _port_closed(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1.0, trust_env=False)
    except httpx.TransportError:
        return True
    return False


def _run_app(client: docker.DockerClient, ref: str) -> tuple[Container, int]:
    container = client.containers.create(ref, ports={"8080/tcp": ("127.0.0.1", None)})
    container.start()
    return container, _published_port(container)


@pytest.fixture
def engine_client(engine: EngineHandle) -> Iterator[docker.DockerClient]:
    """A client of the session's engine; containers the test creates are removed after it."""
    client = engine.client()
    before = {container.id for container in client.containers.list(all=True)}
    yield client
    for container in client.containers.list(all=True):
        if container.id not in before:
            container.remove(force=True)
    client.close()


# -- the engines -------------------------------------------------------------------------------------


def test_engine_serves_the_docker_api_on_a_private_socket(engine: EngineHandle) -> None:
    assert engine.url == f"unix://{engine.socket}"
    assert engine.socket.parent == engine.state_dir
    for path in (engine.root, engine.run_dir, engine.tmp_dir, engine.log_file, *engine.config_files):
        assert path.is_relative_to(engine.state_dir) and path.exists(), path
    client = engine.client()
    try:
        assert client.ping() is True
        info = client.info()
    finally:
        client.close()
    assert engine.api_version == "1.41"
    if engine.name == "podman":
        assert engine.version.startswith("4.")
        assert info["Driver"] == "overlay"
    else:
        assert engine.version.startswith("20.10")
        assert info["Driver"] == "overlay2"
        assert info["DockerRootDir"] == str(engine.root)
        # Every registry on 127.0.0.0/8 is "insecure" for dockerd: no TLS verification (see below).
        assert info["RegistryConfig"]["InsecureRegistryCIDRs"] == ["127.0.0.0/8"]
    assert info["DefaultRuntime"] == "runc"
    assert info["CgroupDriver"] == "cgroupfs"


def test_lab_ca_is_trusted_under_both_certs_dirs(lab: Lab, lab_engine_trust: tuple[Path, ...]) -> None:
    expected = {root / certs_dir_name(registry.host) for root in CERTS_D_ROOTS for registry in lab.registries}
    assert set(lab_engine_trust) == expected
    for directory in lab_engine_trust:
        assert (directory / "ca.crt").read_bytes() == lab.ca.cert_pem.bytes()


@pytest.mark.parametrize(("registry", "image"), [("basic", APP_V1), ("token", APP_V1), ("token", APP_V2)])
def test_pull_with_credentials_run_and_get_the_body(
    engine: EngineHandle,
    engine_client: docker.DockerClient,
    app_images: AppImages,
    registry: str,
    image: str,
) -> None:
    source = _registry(app_images, registry)
    ref = source.ref(image)
    pulled = engine_client.images.pull(ref, auth_config=source.auth_config())
    assert ref in pulled.attrs["RepoDigests"]
    assert pulled.attrs["Architecture"] == app_images.platform.split("/")[1]
    assert pulled.attrs["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    container, port = _run_app(engine_client, ref)
    assert _get_body(port) == app_images.bodies[image]
    container.reload()
    assert container.attrs["State"]["Running"] is True
    # The app stops on SIGTERM at once (sh traps it): no waiting for the kill timeout.
    started = time.monotonic()
    container.stop(timeout=10)
    assert time.monotonic() - started < 5
    assert container.wait(timeout=10)["StatusCode"] == 0


def test_multi_platform_index_runs_this_machines_image(
    engine: EngineHandle, engine_client: docker.DockerClient, app_images: AppImages
) -> None:
    source = app_images.token
    assert app_images.platform in source.platforms and len(source.platforms) == 2
    pulled = engine_client.images.pull(source.ref(APP_MULTI_V1), auth_config=source.auth_config())
    assert pulled.attrs["Architecture"] == app_images.platform.split("/")[1]
    # Both record the index digest that was pulled; Podman also records the platform's own manifest.
    repository = source.ref(APP_MULTI_V1).partition("@")[0]
    expected = {source.ref(APP_MULTI_V1)}
    if engine.name == "podman":
        expected.add(f"{repository}@{source.platforms[app_images.platform]}")
    assert set(pulled.attrs["RepoDigests"]) == expected
    container, port = _run_app(engine_client, source.ref(APP_MULTI_V1))
    assert _get_body(port) == app_images.bodies[APP_MULTI_V1]
    container.remove(force=True)


def test_crash_image_exits_nonzero_and_its_logs_hold_the_lines(
    engine: EngineHandle, engine_client: docker.DockerClient, app_images: AppImages
) -> None:
    source = app_images.basic
    engine_client.images.pull(source.ref(CRASH_V1), auth_config=source.auth_config())
    container = engine_client.containers.create(source.ref(CRASH_V1))
    container.start()
    assert container.wait(timeout=_DEADLINE_S)["StatusCode"] == app_images.crash_exit_code
    container.reload()
    assert container.attrs["State"]["Status"] == "exited"
    assert container.attrs["State"]["ExitCode"] == app_images.crash_exit_code
    stdout = container.logs(stdout=True, stderr=False).decode()
    stderr = container.logs(stdout=False, stderr=True).decode()
    assert stdout.splitlines() == list(app_images.crash_stdout)
    assert stderr.splitlines() == list(app_images.crash_stderr)
    both = container.logs().decode().splitlines()
    assert sorted(both) == sorted([*app_images.crash_stdout, *app_images.crash_stderr])
    # Timestamps: dockerd gives nanoseconds, Podman's compat API whole seconds.
    stamped = container.logs(timestamps=True).decode().splitlines()
    fraction = r"\.\d{9}" if engine.name == "docker" else ""
    assert all(re.match(rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d{fraction}Z ", line) for line in stamped), stamped
    # Where the log file lives: json-file (dockerd) or k8s-file (Podman), under the engine's root.
    log_path = Path(container.attrs["LogPath"])
    assert log_path.is_relative_to(engine.root)
    assert log_path.name == (f"{container.id}-json.log" if engine.name == "docker" else "ctr.log")


# -- credentials -------------------------------------------------------------------------------------


def _fresh_image(lab: Lab, registry: str, engine: EngineHandle, what: str) -> str:
    """A new tiny image in `registry`, never pulled by any engine: its digest reference."""
    target = lab.basic if registry == "basic" else lab.token
    repo_tag = f"acme/{what}-{engine.name}-{os.getpid()}-{time.monotonic_ns()}:v1"
    digest = target.push_image(repo_tag)
    return f"{target.host}/{repo_tag.rpartition(':')[0]}@{digest}"


@pytest.mark.parametrize("registry", ["basic", "token"])
def test_wrong_password_shapes(engine: EngineHandle, app_images: AppImages, lab: Lab, registry: str) -> None:
    """Podman answers 200 and puts the error in the stream; dockerd answers an HTTP error."""
    ref = _fresh_image(lab, registry, engine, "wrongpw")
    wrong = _registry(app_images, registry).auth_config(password="not-the-password")
    if engine.name == "podman":
        lines = _pull_stream(engine, ref, wrong)
        error = _stream_error(lines)
        assert error is not None and lines[-1]["errorDetail"]["message"] == error
        assert error.startswith(f"initializing source docker://{ref}: ")
        if registry == "basic":
            assert error.endswith(": unauthorized: authentication required")
        else:
            assert error.endswith(": unable to retrieve auth token: invalid username/password: unauthorized")
    else:
        with pytest.raises(docker.errors.APIError) as raised:
            _pull_stream(engine, ref, wrong)
        assert raised.value.status_code == 500
        message = raised.value.response.json()["message"]
        if registry == "basic":
            assert message == "unauthorized: authentication required"
        else:
            repository, _, digest = ref.partition("@")
            path = repository.partition("/")[2]
            assert (
                message
                == f'Get "https://{repository.partition("/")[0]}/v2/{path}/manifests/{digest}": unauthorized'
            )


def test_sdk_images_pull_reports_podman_auth_errors_as_image_not_found(
    engine: EngineHandle, app_images: AppImages, lab: Lab
) -> None:
    """`DockerClient.images.pull` ignores errors inside the stream: on Podman a refused pull surfaces
    only as the 404 of the image lookup that follows. Use the low-level stream to see the cause."""
    ref = _fresh_image(lab, "basic", engine, "sdkpull")
    client = engine.client()
    try:
        expected = docker.errors.ImageNotFound if engine.name == "podman" else docker.errors.APIError
        with pytest.raises(expected) as raised:
            client.images.pull(ref, auth_config=app_images.basic.auth_config(password="wrong"))
        assert raised.value.status_code == (404 if engine.name == "podman" else 500)
    finally:
        client.close()


@pytest.mark.parametrize("registry", ["basic", "token"])
def test_repull_of_a_cached_digest_with_a_wrong_password(
    engine: EngineHandle, app_images: AppImages, lab: Lab, registry: str
) -> None:
    """Podman asks the registry on every pull. dockerd does not, for a digest it already pulled from
    the same repository: wrong or no credentials pull it "successfully". A pull on dockerd is no
    access check."""
    ref = _fresh_image(lab, registry, engine, "cached")
    source = _registry(app_images, registry)
    assert _stream_error(_pull_stream(engine, ref, source.auth_config())) is None
    for auth in (source.auth_config(password="wrong"), None):
        if engine.name == "podman":
            error = _stream_error(_pull_stream(engine, ref, auth))
            assert error is not None and error.startswith(f"initializing source docker://{ref}: ")
        else:
            lines = _pull_stream(engine, ref, auth)
            assert _stream_error(lines) is None
            assert lines[-1]["status"] == f"Status: Image is up to date for {ref}"


def test_credentials_do_not_stay_in_the_engines_files(
    engine: EngineHandle, engine_client: docker.DockerClient, app_images: AppImages, lab: Lab
) -> None:
    for source in app_images.registries:
        engine_client.images.pull(source.ref(APP_V1), auth_config=source.auth_config())
    ref = _fresh_image(lab, "token", engine, "canary")
    _pull_stream(engine, ref, app_images.token.auth_config())
    needles = credential_needles(app_images.basic.username, app_images.basic.password)
    scan = scan_engine_state(engine, needles)
    assert scan.matches == []
    assert engine.log_file in scan.paths and scan.files > 20 and scan.bytes > 1_000_000
    # The scan does find a planted secret (in each form), so an empty result means something.
    planted = engine.tmp_dir / "planted-canary"
    try:
        for needle in needles:
            planted.write_bytes(b"prefix " + needle + b" suffix")
            assert grep_engine_state(engine, [needle]) == [planted]
    finally:
        planted.unlink()


# -- trust and reach ---------------------------------------------------------------------------------


def test_which_certs_dirs_each_engine_reads(engine: EngineHandle, app_images: AppImages, lab: Lab) -> None:
    """Pull the basic registry under its other name, `localhost:PORT`, which the session's certs.d
    dirs do not cover. Podman verifies TLS and reads both dirs; dockerd verifies nothing on loopback."""
    source = app_images.basic
    host = f"localhost:{source.registry.port}"
    ref = source.ref(APP_V1).replace(source.host, host, 1)
    assert not any((root / host).exists() for root in CERTS_D_ROOTS)
    if engine.name == "docker":
        assert _stream_error(_pull_stream(engine, ref, source.auth_config())) is None
        return
    error = _stream_error(_pull_stream(engine, ref, source.auth_config()))
    assert error is not None and error.endswith("x509: certificate signed by unknown authority")
    for roots in ([CONTAINERS_CERTS_D], [DOCKER_CERTS_D]):
        with trust_registries([host], lab.ca.cert_pem.bytes(), roots=roots):
            assert _stream_error(_pull_stream(engine, ref, source.auth_config())) is None, roots


def test_pulls_off_loopback_fail_at_once_without_leaving_the_machine(engine: EngineHandle) -> None:
    """A short name means docker.io: Podman refuses it (blocked in its registries.conf), dockerd tries
    and meets the dead proxy on 127.0.0.1:9."""
    started = time.monotonic()
    with docker.APIClient(base_url=engine.url, version=engine.api_version, timeout=30) as api:
        if engine.name == "podman":
            lines = list(api.pull("busybox", tag="latest", stream=True, decode=True))
            error = _stream_error(lines)
            assert error is not None and "registry docker.io is blocked" in error
        else:
            with pytest.raises(docker.errors.APIError) as raised:
                list(api.pull("busybox", tag="latest", stream=True, decode=True))
            assert "proxyconnect tcp: dial tcp 127.0.0.1:9: connect: connection refused" in str(
                raised.value.response.json()["message"]
            )
    assert time.monotonic() - started < 5


# -- clean-up ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_a_stopped_engine_leaves_nothing_behind(
    name: EngineName, lab_engine_trust: tuple[Path, ...], app_images: AppImages
) -> None:
    problem = engine_problem(name)
    if problem is not None:
        pytest.skip(problem)
    reports: list[StopReport] = []
    with start_engine(name, reports=reports) as handle:
        client = handle.client()
        client.images.pull(app_images.basic.ref(APP_V1), auth_config=app_images.basic.auth_config())
        container, port = _run_app(client, app_images.basic.ref(APP_V1))
        _get_body(port)
        client.close()
        assert mounts_under(handle.state_dir) and processes_under(handle.state_dir)
    [report] = reports
    assert report.containers_removed == 1
    assert report.exited, "the engine needed SIGKILL"
    assert report.cleanup.problems == []
    assert report.cleanup.killed == [], "processes outlived their engine"
    _assert_gone(handle, port, container.id)


def _assert_gone(handle: EngineHandle, port: int, container_id: str) -> None:
    assert not handle.state_dir.exists()
    assert processes_under(handle.state_dir, [container_id]) == []
    assert cgroups_of({container_id}) == []
    assert mounts_under(handle.state_dir) == []
    assert processes_under(handle.state_dir) == []
    assert not link_exists(handle.bridge)
    assert _port_closed(port)
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    assert handle.subnet not in rules and handle.bridge not in rules


_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from tests.lab.engines import start_engine
    name, ref, user, password = sys.argv[1:5]
    with start_engine(name) as handle:
        client = handle.client()
        client.images.pull(ref, auth_config={"username": user, "password": password})
        container = client.containers.create(ref, ports={"8080/tcp": ("127.0.0.1", None)})
        container.start()
        container.reload()
        print(json.dumps({
            "state_dir": str(handle.state_dir), "pid": handle.pid, "bridge": handle.bridge,
            "subnet": handle.subnet, "id": container.id,
            "port": int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]),
            "sandbox": container.attrs["NetworkSettings"]["SandboxKey"],
        }), flush=True)
        time.sleep(600)
    """
)


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_a_killed_session_is_swept_by_the_next(
    name: EngineName, lab_engine_trust: tuple[Path, ...], app_images: AppImages
) -> None:
    """SIGKILL a test process and its engine while a container runs: the next claim sweeps it all."""
    problem = engine_problem(name)
    if problem is not None:
        pytest.skip(problem)
    source = app_images.basic
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, name, source.ref(APP_V1), source.username, source.password],
        cwd=_REPO_ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(_REPO_ROOT / "src"), str(_REPO_ROOT)])},
        stdout=subprocess.PIPE,
    )
    started: dict[str, Any] = {}
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 60)
        assert ready, "the child did not start its engine in 60 s"
        started = json.loads(child.stdout.readline())
        state_dir = Path(started["state_dir"])
        assert _get_body(started["port"]) == app_images.bodies[APP_V1]
    finally:
        # The engine first, as if the OOM killer struck: killing the test process first would send
        # the engine SIGTERM (its parent-death signal), and dockerd would stop its containers.
        if "pid" in started:
            os.kill(started["pid"], signal.SIGKILL)
        child.kill()
        child.wait()
    container_id = started["id"]
    assert processes_under(state_dir, [container_id])  # the container still runs
    assert cgroups_of({container_id})
    if name == "docker":
        shim = shim_socket(str(state_dir / "exec/containerd/containerd.sock"), "moby", container_id)
        assert shim.exists()
    else:
        assert Path("/run/runc", container_id).exists()

    sweep()  # (a concurrent session's claim may sweep it first: either way it is gone)
    assert not state_dir.exists()
    assert mounts_under(state_dir) == [] and processes_under(state_dir, [container_id]) == []
    assert cgroups_of({container_id}) == []
    assert not link_exists(started["bridge"])
    assert _port_closed(started["port"])
    assert not Path(started["sandbox"]).exists()
    if name == "docker":
        assert not shim.exists()
    else:
        assert not Path("/run/runc", container_id).exists()
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    assert started["subnet"] not in rules


def test_leases_are_swept_only_when_their_owner_is_gone(tmp_path: Path) -> None:
    base = tmp_path / "leases"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from tests.lab.leases import claim;"
            "lease = claim('probe', {}, base=Path(sys.argv[1]));"
            "print(lease.path, flush=True); time.sleep(600)",
            str(base),
        ],
        cwd=_REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        path = Path(owner.stdout.readline().strip())
        assert path.is_dir() and path.parent == base
        assert sweep(base) == [] and path.exists()  # alive: left alone
        mine = claim("probe", {}, base=base)
        assert path.exists() and mine.path.exists()
    finally:
        owner.kill()
        owner.wait()
    assert sweep(base) == [path] and not path.exists()
    assert mine.path.exists()  # still held by this process
    assert mine.release().problems == [] and not mine.path.exists()


def test_trust_registries_removes_exactly_its_own_directories(tmp_path: Path, lab_ca: trustme.CA) -> None:
    lab_ca_pem = lab_ca.cert_pem.bytes()
    roots = [tmp_path / "containers-certs.d", tmp_path / "docker-certs.d"]
    keep = roots[0] / "127.0.0.1:1"
    keep.mkdir(parents=True)
    (keep / "ca.crt").write_bytes(b"someone else's")
    with trust_registries(
        ["127.0.0.1:2", "::1:3"], lab_ca_pem, roots=roots, base=tmp_path / "leases"
    ) as dirs:
        assert sorted(p.relative_to(tmp_path).as_posix() for p in dirs) == [
            "containers-certs.d/127.0.0.1:2",
            "containers-certs.d/[::1]:3",
            "docker-certs.d/127.0.0.1:2",
            "docker-certs.d/[::1]:3",
        ]
        assert all((d / "ca.crt").read_bytes() == lab_ca_pem for d in dirs)
        # Another session reusing the port after this one ends has its own CA there: kept.
        (roots[1] / "127.0.0.1:2" / "ca.crt").write_bytes(b"a later session's CA")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*-certs.d/*")) == [
        "containers-certs.d/127.0.0.1:1",
        "docker-certs.d/127.0.0.1:2",
    ]
    assert list((tmp_path / "leases").glob("trust-*")) == []


def test_a_killed_sessions_trust_is_swept(tmp_path: Path, lab_ca: trustme.CA) -> None:
    roots, base = [tmp_path / "certs.d"], tmp_path / "leases"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from tests.lab.trust import trust_registries\n"
            "with trust_registries(['127.0.0.1:4'], sys.stdin.buffer.read(), roots=[Path(sys.argv[1])],"
            " base=Path(sys.argv[2])):\n    print('ready', flush=True); time.sleep(600)",
            str(roots[0]),
            str(base),
        ],
        cwd=_REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=False,
    )
    try:
        assert owner.stdin is not None and owner.stdout is not None
        owner.stdin.write(lab_ca.cert_pem.bytes())
        owner.stdin.close()
        assert owner.stdout.readline() == b"ready\n"
        assert (roots[0] / "127.0.0.1:4" / "ca.crt").read_bytes() == lab_ca.cert_pem.bytes()
    finally:
        owner.kill()
        owner.wait()
    assert len(sweep(base)) == 1
    assert list(roots[0].iterdir()) == []
