"""Real container engines serving the Docker Engine API on private unix sockets, with private state.

`start_engine("podman")` / `start_engine("docker")` run one engine for the block and yield an
`EngineHandle`; at the end every container is removed, the engine is stopped (SIGTERM, then SIGKILL)
and its lease given back (`tests.lab.leases`: leftover processes killed, mounts undone, bridge
deleted, directory removed). A killed test run leaves a stale lease that the next start sweeps.

Podman 4.3 (`podman system service`):
- private `containers.conf` (`CONTAINERS_CONF`): `runtime = "runc"` (crun fails on this cgroup
  layout), `default_ulimits = []` (the default rlimits are refused), cgroupfs, file locks in the lease
  instead of the machine-wide `/dev/shm/libpod_lock`, a private `tmp_dir`, events to a file, and the
  network config dir in the lease, holding its own default network: a bridge and a subnet of its own
  (netavark creates the bridge with the first container and deletes it with the last);
- private `storage.conf` and `registries.conf` (no search registries, docker.io blocked).

dockerd 20.10: `--data-root`, `--exec-root`, `--pidfile`, `-H unix://…` and a private daemon.json
(`--config-file`): its own bridge (created here), `iptables: false` and `ip-forward: false`. Ports
published on 127.0.0.1 are served by docker-proxy, so nothing needs iptables; without iptables two
test dockerds share no chain, bridge or subnet, and concurrent pytest sessions need no lock. The
price: dockerd here enforces no isolation between its networks (no DOCKER-ISOLATION rules).

Both engines get a dead HTTP(S) proxy (127.0.0.1:9) with NO_PROXY for loopback: a pull of anything not
on loopback (`busybox` means docker.io) fails at once instead of leaving the machine.

What they still write outside the lease, shared with every other engine on the machine, is listed
in `EngineHandle.shared_paths` (the canary greps those too).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import docker

from tests.lab.leases import LEASE_BASE, Cleanup, Lease, claim, delete_link

EngineName = Literal["podman", "docker"]
ENGINE_NAMES: tuple[EngineName, ...] = ("podman", "docker")

# Binaries each engine needs, and the Debian packages that bring them.
REQUIRED_BINARIES: dict[EngineName, tuple[str, ...]] = {
    "podman": ("podman", "conmon", "runc", "netavark"),
    "docker": ("dockerd", "containerd", "containerd-shim-runc-v2", "runc", "docker-proxy", "ip"),
}
PACKAGES: dict[EngineName, str] = {
    "podman": "podman runc netavark",
    "docker": "docker.io iproute2, --no-install-recommends",
}

# Anything an engine fetches from outside loopback goes to this proxy, where nothing listens.
DEAD_PROXY = "http://127.0.0.1:9"
NO_PROXY = "127.0.0.0/8,::1/128,localhost"
ENGINE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Where Podman looks for its helpers (netavark, aardvark-dns): containers.conf's helper_binaries_dir.
PODMAN_HELPER_DIRS = "/usr/local/libexec/podman:/usr/local/lib/podman:/usr/libexec/podman:/usr/lib/podman"

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 15.0
_API_TIMEOUT_S = 60
_LOG_TAIL = 3000

# Machine-wide places the engines write no matter how they are configured (checked by hand with
# `find / -newer`; see docs/engine-lab.md).
PODMAN_SHARED_PATHS = (
    Path("/run/runc"),  # runc state of Podman's containers (runc's default --root for root)
    Path("/run/netns"),  # the containers' network namespaces (bind mounts, removed with them)
    Path("/run/containers/networks"),  # netavark's IPAM database (keyed by network name)
    Path("/var/lib/containers/cache"),  # containers/image blob-info cache (digests and locations)
)
DOCKER_SHARED_PATHS = (
    Path("/run/containerd/s"),  # shim sockets (containerd's hard-coded socket root)
    Path("/run/docker/plugins"),  # plugin discovery (empty)
    Path("/opt/containerd"),  # the managed containerd's "opt" plugin dirs (empty)
)


class EngineStartError(RuntimeError):
    """An engine did not come up; the message carries the tail of its log."""


class EngineStopError(RuntimeError):
    """An engine did not stop cleanly (something could not be killed, unmounted or removed)."""


@dataclass(frozen=True)
class EngineHandle:
    """A running engine.

    `url` is the Docker Engine API endpoint (`unix:///…/podman.sock`). Everything the engine writes
    privately is below `state_dir`: `root` (Podman's --root, dockerd's --data-root), `run_dir`
    (Podman's --runroot, dockerd's --exec-root), `tmp_dir` (its TMPDIR; Podman's tmp_dir), `log_file`
    (its stdout and stderr) and `config_files`. `shared_paths` are the machine-wide places it also
    writes, shared with other engines. Its default network is `bridge` on `subnet`; networks created
    through the API come from `address_pool`.
    """

    name: EngineName
    url: str
    socket: Path
    state_dir: Path
    root: Path
    run_dir: Path
    tmp_dir: Path
    log_file: Path
    config_files: tuple[Path, ...]
    shared_paths: tuple[Path, ...]
    bridge: str
    subnet: str
    address_pool: str
    pid: int
    version: str = ""
    api_version: str = ""

    @property
    def written_paths(self) -> tuple[Path, ...]:
        """Every place this engine may have written: its state dir, then the shared paths."""
        return (self.state_dir, *self.shared_paths)

    def client(self, *, timeout: int = _API_TIMEOUT_S) -> docker.DockerClient:
        """A Docker SDK client for this engine (the caller closes it)."""
        return docker.DockerClient(base_url=self.url, version=self.api_version or "auto", timeout=timeout)

    def log_tail(self, limit: int = _LOG_TAIL) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-limit:]
        except OSError:
            return ""


@dataclass
class StopReport:
    """How an engine stopped: `exited` by itself after SIGTERM (or was killed), and the cleanup."""

    containers_removed: int = 0
    exited: bool = False
    cleanup: Cleanup = field(default_factory=Cleanup)


def engine_problem(name: EngineName) -> str | None:
    """Why this machine cannot run `name` (missing binaries, not root), or None."""
    if os.geteuid() != 0:
        return f"the {name} engine lab runs rootful engines and needs root"
    search = f"{ENGINE_PATH}:{PODMAN_HELPER_DIRS}"
    missing = [binary for binary in REQUIRED_BINARIES[name] if shutil.which(binary, path=search) is None]
    if missing:
        return f"{', '.join(missing)} missing (Debian packages: {PACKAGES[name]})"
    return None


@contextlib.contextmanager
def start_engine(
    name: EngineName, *, base: Path = LEASE_BASE, reports: list[StopReport] | None = None
) -> Iterator[EngineHandle]:
    """Run engine `name` for the block (call it from the thread that outlives the engine: it gets
    SIGTERM when the thread that started it ends). A `StopReport` is appended to `reports`."""
    starter = _start_podman if name == "podman" else _start_docker
    lease = claim(name, {}, base=base, subnet_block=True)
    process: subprocess.Popen[bytes] | None = None
    handle: EngineHandle | None = None
    report = StopReport()
    try:
        launched, process = starter(lease)
        handle = _wait_ready(launched, process)
        yield handle
    finally:
        if handle is not None:
            report.containers_removed = _remove_all_containers(handle)
        if process is not None:
            report.exited = _terminate(process)
        report.cleanup = lease.release(run_before_kill=handle is None)
        if reports is not None:
            reports.append(report)
    if report.cleanup.problems:
        raise EngineStopError(f"{name} did not stop cleanly: {'; '.join(report.cleanup.problems)}")


# -- podman -----------------------------------------------------------------------------------------


def _podman_layout(lease: Lease) -> dict[str, Path]:
    d = lease.path
    return {
        "root": d / "root",
        "run": d / "run",
        "tmp": d / "tmp",
        "networks": d / "networks",
        "containers_conf": d / "containers.conf",
        "storage_conf": d / "storage.conf",
        "registries_conf": d / "registries.conf",
        "auth": d / "auth.json",
        "events": d / "events.log",
        "log": d / "podman.log",
        "socket": d / "podman.sock",
    }


def _podman_env(paths: dict[str, Path]) -> dict[str, str]:
    return {
        **_base_env(paths["tmp"]),
        "CONTAINERS_CONF": str(paths["containers_conf"]),
        "CONTAINERS_STORAGE_CONF": str(paths["storage_conf"]),
        "CONTAINERS_REGISTRIES_CONF": str(paths["registries_conf"]),
        "REGISTRY_AUTH_FILE": str(paths["auth"]),  # never created: no stored credentials are read
    }


def _start_podman(lease: Lease) -> tuple[EngineHandle, subprocess.Popen[bytes]]:
    paths = _podman_layout(lease)
    block = str(lease.record["block"])
    subnet, gateway = _first_subnet(block)
    bridge = f"gpd{lease.id}"
    network = f"guara-{lease.id}"
    for key in ("root", "run", "tmp", "networks"):
        paths[key].mkdir(mode=0o700)
    paths["containers_conf"].write_text(
        "[containers]\n"
        "default_ulimits = []\n"
        'log_driver = "k8s-file"\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'lock_type = "file"\n'
        f"tmp_dir = {_toml(paths['tmp'])}\n"
        'events_logger = "file"\n'
        f"events_logfile_path = {_toml(paths['events'])}\n"
        "[network]\n"
        'network_backend = "netavark"\n'
        f"network_config_dir = {_toml(paths['networks'])}\n"
        f"default_network = {_toml(network)}\n"
        f"default_subnet = {_toml(subnet)}\n"
        f'default_subnet_pools = [{{"base" = {_toml(block)}, "size" = 24}}]\n'
    )
    paths["storage_conf"].write_text(
        "[storage]\n"
        'driver = "overlay"\n'
        f"graphroot = {_toml(paths['root'])}\n"
        f"runroot = {_toml(paths['run'])}\n"
    )
    paths["registries_conf"].write_text(
        'unqualified-search-registries = []\nshort-name-mode = "enforcing"\n'
        '[[registry]]\nlocation = "docker.io"\nblocked = true\n'
    )
    # The default network, written out so that it has its own name, bridge and subnet (Podman's
    # built-in one is "podman" on podman0, shared by every Podman on the machine).
    (paths["networks"] / f"{network}.json").write_text(
        json.dumps(
            {
                "name": network,
                "id": lease.id * 8,
                "driver": "bridge",
                "network_interface": bridge,
                "created": "2024-01-01T00:00:00Z",
                "subnets": [{"subnet": subnet, "gateway": gateway}],
                "ipv6_enabled": False,
                "internal": False,
                "dns_enabled": False,
                "ipam_options": {"driver": "host-local"},
            },
            indent=2,
        )
    )
    env = _podman_env(paths)
    cli = ["podman", "--root", str(paths["root"]), "--runroot", str(paths["run"])]
    # A killed session's containers outlive `podman system service` (conmon keeps them): the sweep
    # removes them with the CLI, which also frees their network namespace, IPAM entry and runc state.
    lease.record.update(
        bridges=[bridge],
        before_kill={"argv": [*cli, "rm", "--all", "--force", "--time", "0"], "env": env},
        container_dirs=[str(paths["root"] / "overlay-containers")],
        runc_state_dirs=["/run/runc"],
    )
    lease.save()
    command = [*cli, "--log-level", "info", "system", "service", "--time=0", f"unix://{paths['socket']}"]
    process = _launch(command, env=env, log_file=paths["log"], cwd=lease.path)
    handle = EngineHandle(
        name="podman",
        url=f"unix://{paths['socket']}",
        socket=paths["socket"],
        state_dir=lease.path,
        root=paths["root"],
        run_dir=paths["run"],
        tmp_dir=paths["tmp"],
        log_file=paths["log"],
        config_files=(paths["containers_conf"], paths["storage_conf"], paths["registries_conf"]),
        shared_paths=PODMAN_SHARED_PATHS,
        bridge=bridge,
        subnet=subnet,
        address_pool=block,
        pid=process.pid,
    )
    return handle, process


# -- docker -----------------------------------------------------------------------------------------


def _start_docker(lease: Lease) -> tuple[EngineHandle, subprocess.Popen[bytes]]:
    d = lease.path
    root, run, tmp = d / "root", d / "exec", d / "tmp"
    config, log_file, sock = d / "daemon.json", d / "dockerd.log", d / "docker.sock"
    block = str(lease.record["block"])
    subnet, gateway = _first_subnet(block)
    bridge = f"gdk{lease.id}"
    for directory in (root, run, tmp):
        directory.mkdir(mode=0o700)
    lease.record.update(
        bridges=[bridge],
        container_dirs=[str(root / "containers")],
        shim_sockets={"address": str(run / "containerd" / "containerd.sock"), "namespace": "moby"},
    )
    lease.save()
    _create_bridge(bridge, f"{gateway}/{subnet.rpartition('/')[2]}")
    config.write_text(
        json.dumps(
            {
                "bridge": bridge,
                "iptables": False,
                "ip-forward": False,
                "ip-masq": False,
                "userland-proxy": True,
                "default-address-pools": [{"base": block, "size": 24}],
                "deprecated-key-path": str(d / "key.json"),
                "storage-driver": "overlay2",
                "log-driver": "json-file",
                "log-level": "info",
                "live-restore": False,
                "shutdown-timeout": 5,
                "features": {"buildkit": False},
            },
            indent=2,
        )
    )
    command = [
        "dockerd",
        "--config-file",
        str(config),
        "--data-root",
        str(root),
        "--exec-root",
        str(run),
        "--pidfile",
        str(d / "docker.pid"),
        "-H",
        f"unix://{sock}",
    ]
    process = _launch(command, env=_base_env(tmp), log_file=log_file, cwd=d)
    handle = EngineHandle(
        name="docker",
        url=f"unix://{sock}",
        socket=sock,
        state_dir=d,
        root=root,
        run_dir=run,
        tmp_dir=tmp,
        log_file=log_file,
        config_files=(config,),
        shared_paths=DOCKER_SHARED_PATHS,
        bridge=bridge,
        subnet=subnet,
        address_pool=block,
        pid=process.pid,
    )
    return handle, process


def _create_bridge(name: str, address: str) -> None:
    for command in (
        ["ip", "link", "add", "name", name, "type", "bridge"],
        ["ip", "addr", "add", address, "dev", name],
        ["ip", "link", "set", name, "up"],
    ):
        result = subprocess.run(command, capture_output=True, timeout=10, check=False)
        if result.returncode != 0:
            delete_link(name)
            raise EngineStartError(f"{' '.join(command)}: {result.stderr.decode(errors='replace').strip()}")


# -- shared plumbing ---------------------------------------------------------------------------------


def _base_env(tmp: Path) -> dict[str, str]:
    """The whole environment of an engine: nothing is inherited from the test process."""
    return {
        "PATH": ENGINE_PATH,
        "HOME": str(tmp),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "HTTP_PROXY": DEAD_PROXY,
        "HTTPS_PROXY": DEAD_PROXY,
        "http_proxy": DEAD_PROXY,
        "https_proxy": DEAD_PROXY,
        "NO_PROXY": NO_PROXY,
        "no_proxy": NO_PROXY,
    }


def _toml(value: object) -> str:
    # A TOML basic string: JSON string escaping is a subset of what TOML accepts.
    return json.dumps(str(value))


def _first_subnet(block: str) -> tuple[str, str]:
    """The first /24 of a block and its gateway (.1)."""
    subnet = next(ipaddress.IPv4Network(block).subnets(new_prefix=24))
    return str(subnet), str(subnet.network_address + 1)


def _launch(command: list[str], *, env: dict[str, str], log_file: Path, cwd: Path) -> subprocess.Popen[bytes]:
    executable = shutil.which(command[0], path=ENGINE_PATH)
    if executable is None:
        raise EngineStartError(f"{command[0]} not found in {ENGINE_PATH}")
    argv = [executable, *command[1:]]
    setpriv = shutil.which("setpriv", path=ENGINE_PATH)
    if setpriv is not None:
        # If the test process dies without cleaning up (SIGKILL), the engine follows it.
        argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
    with log_file.open("ab") as log:
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )


def _wait_ready(handle: EngineHandle, process: subprocess.Popen[bytes]) -> EngineHandle:
    """Poll `GET /_ping` until it answers 200; its headers name the version (no `GET /version`:
    Podman runs conmon and runc to answer it, 0.6 s here)."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        status, headers = _ping(handle.socket)
        if status == 200:
            break
        if process.poll() is not None:
            raise EngineStartError(f"{handle.name} exited with {process.returncode}:\n{handle.log_tail()}")
        if time.monotonic() > deadline:
            raise EngineStartError(f"{handle.name} did not answer /_ping in {_START_TIMEOUT_S} s")
        time.sleep(0.02)
    # "Server: Libpod/4.3.1 (linux)" or "Server: Docker/20.10.24+dfsg1 (linux)"
    server = headers.get("server", "").partition("/")[2].partition(" ")[0]
    return dataclasses.replace(handle, version=server, api_version=headers.get("api-version", ""))


def _ping(path: Path) -> tuple[int | None, dict[str, str]]:
    """`GET /_ping` over the unix socket: the status and the headers (lower-case names)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer and len(answer) < 16384:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return None, {}
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def _remove_all_containers(handle: EngineHandle) -> int:
    """Force-remove every container (the engine stops them with SIGKILL) and the networks left unused;
    return how many containers."""
    if _ping(handle.socket)[0] != 200:
        return 0
    removed = 0
    client = handle.client()
    try:
        for container in client.containers.list(all=True, ignore_removed=True):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
                removed += 1
        # The networks made through the API (one per guara project): an engine keeps them, and their
        # bridges, past its own stop.
        client.networks.prune()
    except docker.errors.DockerException:
        pass  # the lease cleanup still kills and unmounts whatever is left
    finally:
        client.close()
    return removed


def _terminate(process: subprocess.Popen[bytes]) -> bool:
    """SIGTERM, wait; SIGKILL if it will not go. True when it exited by itself."""
    if process.poll() is not None:
        return True
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(_STOP_TIMEOUT_S)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False


# -- what the engine wrote ---------------------------------------------------------------------------


@dataclass
class StateScan:
    """The result of reading every regular file an engine may have written."""

    matches: list[Path] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    paths: set[Path] = field(default_factory=set, repr=False)


def scan_engine_state(handle: EngineHandle, needles: Iterable[bytes | str]) -> StateScan:
    """Read every regular file under `handle.written_paths` (without following links) for `needles`."""
    wanted = [n.encode() if isinstance(n, str) else n for n in needles]
    if not wanted or not all(wanted):
        raise ValueError("needles must be non-empty")
    scan = StateScan()
    for path in _regular_files(handle.written_paths):
        try:
            data = path.read_bytes()
        except OSError:
            continue  # gone, or a kernel file that cannot be read (an nsfs bind mount)
        scan.files += 1
        scan.bytes += len(data)
        scan.paths.add(path)
        if any(needle in data for needle in wanted):
            scan.matches.append(path)
    return scan


def grep_engine_state(handle: EngineHandle, needles: Iterable[bytes | str]) -> list[Path]:
    """The files the engine wrote (privately or in its shared paths) that contain any of `needles`."""
    return scan_engine_state(handle, needles).matches


def _regular_files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        try:
            mode = root.lstat().st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode):
            yield root
            continue
        for directory, _dirs, files in os.walk(root, followlinks=False):
            for name in files:
                path = Path(directory, name)
                with contextlib.suppress(OSError):
                    if stat.S_ISREG(path.lstat().st_mode):
                        yield path


def credential_needles(username: str, password: str) -> tuple[bytes, ...]:
    """The forms a password can take in an engine's files: raw, JSON-escaped (as Go and Python write
    it), hex, `base64(user:password)` (Basic auth, auth.json), and the `X-Registry-Auth` header the
    Docker SDK sends for `auth_config={"username": ..., "password": ...}`."""
    pair = f"{username}:{password}".encode()
    sdk_header = base64.urlsafe_b64encode(json.dumps({"username": username, "password": password}).encode())
    forms = {
        password.encode(),
        json.dumps(password)[1:-1].encode(),  # \u00f1 for ñ, \" for "
        json.dumps(password, ensure_ascii=False)[1:-1].encode(),
        base64.b64encode(pair),
        base64.urlsafe_b64encode(pair),
        base64.b64encode(pair).rstrip(b"="),
        base64.b64encode(password.encode()).rstrip(b"="),
        password.encode().hex().encode(),
        password.encode("unicode_escape"),
        sdk_header,
    }
    return tuple(sorted(forms))
