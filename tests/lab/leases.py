"""Machine-wide state that an engine-lab session claims, and gives back even after a killed run.

Every engine and every set of trusted registry certificates lives in a *lease*: a directory
`LEASE_BASE/<kind>-<8 hex>/` holding `lease.json` (what to give back) and `lease.lock`, which the
owning test process keeps `flock`ed for as long as the lease lives. The kernel drops that lock when
the process dies, even on SIGKILL, so a lease whose lock can be taken is stale by definition.

`claim()` first sweeps every stale lease (the cleanup below) under the short `LEASE_BASE/.lock`,
which also serialises choosing subnets, creating directories and releasing leases, so two sessions
never pick the same block and a sweeper never sees a half-created or half-removed lease.

Cleanup is the same, in this order, for a stale lease and for one its owner gives back:
1. for a stale lease (or an engine that failed to start), the command recorded as `before_kill`
   (Podman's CLI removing the containers of a killed service, which also tears down their network
   namespaces and runtime state);
2. SIGKILL every process whose command line mentions the lease directory or whose root or working
   directory is below it (engines, shims, conmon, and the containers' processes themselves);
   and every process in a cgroup named after one of the engine's containers (`container_dirs`);
3. unmount everything mounted below the directory (deepest first, lazily);
4. remove what those containers left outside: runc state (`runc_state_dirs`), containerd shim
   sockets (`shim_sockets`) and their empty cgroup directories;
5. delete the network bridges and the certificate directories the lease recorded;
6. remove the directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

LEASE_BASE = Path("/var/tmp/guara-engine-lab")
# Blocks of /20 handed to engines for their bridge and their networks (10.150.0.0 - 10.151.255.255).
SUBNET_SPACE = ipaddress.IPv4Network("10.150.0.0/15")
BLOCK_PREFIX = 20

_LOCK_TIMEOUT_S = 60.0
_KILL_WAIT_S = 10.0
_HOOK_TIMEOUT_S = 60.0
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
_SHIM_SOCKET_ROOT = Path("/run/containerd/s")
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_MNT_DETACH = 2

log = logging.getLogger(__name__)


class LeaseError(RuntimeError):
    """A lease could not be claimed or given back."""


@dataclass
class Cleanup:
    """What giving a lease back took: processes killed, mounts undone, and what could not be done."""

    killed: list[str] = field(default_factory=list)
    unmounted: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class Lease:
    """One claimed directory. `record` is written to `lease.json` for a later sweeper."""

    kind: str
    path: Path
    record: dict[str, object]
    _lock_fd: int | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.path.name.rpartition("-")[2]

    def save(self) -> None:
        """Write `record` (call it before creating what it lists, so a sweeper can undo it)."""
        temp = self.path / "lease.json.tmp"
        temp.write_text(json.dumps(self.record, indent=2))
        temp.replace(self.path / "lease.json")

    def release(self, *, run_before_kill: bool = False) -> Cleanup:
        """Give everything back; report what that took (`problems` is empty when all went well).

        The recorded `before_kill` command runs only when asked: an owner that stopped its engine
        properly has nothing left for it to do.
        """
        try:
            with base_lock(self.path.parent):
                return _clean(self.path, self.record, run_before_kill=run_before_kill)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


@contextlib.contextmanager
def base_lock(base: Path = LEASE_BASE) -> Iterator[None]:
    """The short machine-wide lock around sweeping and claiming."""
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(base / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _flock_with_deadline(fd, _LOCK_TIMEOUT_S, str(base / ".lock"))
        yield
    finally:
        os.close(fd)  # closing drops the flock


def claim(
    kind: str, record: dict[str, object], *, base: Path = LEASE_BASE, subnet_block: bool = False
) -> Lease:
    """Sweep stale leases, then create and lock a new one (with a free /20 when `subnet_block`)."""
    with base_lock(base):
        sweep(base, locked=True)
        path = base / f"{kind}-{secrets.token_hex(4)}"
        path.mkdir(mode=0o700)
        fd = os.open(path / "lease.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lease = Lease(kind=kind, path=path, record={"kind": kind, "pid": os.getpid(), **record}, _lock_fd=fd)
        if subnet_block:
            lease.record["block"] = str(_free_block(base, exclude=path))
        lease.save()
        return lease


def sweep(base: Path = LEASE_BASE, *, locked: bool = False) -> list[Path]:
    """Clean every stale lease under `base`; return the directories removed."""
    if not locked:
        with base_lock(base):
            return sweep(base, locked=True)
    removed = []
    for path in sorted(base.iterdir()) if base.is_dir() else ():
        if not path.is_dir() or path.name.startswith("."):
            continue
        fd = _try_lock(path / "lease.lock")
        if fd is None:
            continue  # alive: its owner holds the lock
        try:
            cleanup = _clean(path, _read_record(path), run_before_kill=True)
            for problem in cleanup.problems:
                log.warning("stale lease %s: %s", path, problem)
            if not path.exists():
                removed.append(path)
        finally:
            os.close(fd)
    _delete_orphan_bridges(live_blocks(base))
    return removed


def _delete_orphan_bridges(live: list[ipaddress.IPv4Network]) -> None:
    """Bridges with an address in the lab's space that no live lease owns: the networks an engine
    created through its API (one per guara project), left behind by an engine that was killed, or that
    kept them across its own stop (dockerd does not delete its networks' bridges when it exits)."""
    result = subprocess.run(["ip", "-4", "-j", "addr", "show"], capture_output=True, timeout=10)
    for link in json.loads(result.stdout or b"[]"):
        name = str(link.get("ifname", ""))
        for address in link.get("addr_info", []):
            with contextlib.suppress(ValueError, KeyError):
                network = ipaddress.IPv4Network(f"{address['local']}/{address['prefixlen']}", strict=False)
                if network.subnet_of(SUBNET_SPACE) and not any(network.overlaps(b) for b in live):
                    for problem in delete_link(name):
                        log.warning("orphan bridge %s: %s", name, problem)
                    break


def live_blocks(base: Path = LEASE_BASE, *, exclude: Path | None = None) -> list[ipaddress.IPv4Network]:
    """The subnet blocks recorded by the leases under `base` (call with the base lock held)."""
    blocks = []
    for path in base.iterdir() if base.is_dir() else ():
        if path == exclude or not path.is_dir():
            continue
        block = _read_record(path).get("block")
        if isinstance(block, str):
            blocks.append(ipaddress.IPv4Network(block))
    return blocks


def _free_block(base: Path, *, exclude: Path) -> ipaddress.IPv4Network:
    taken = [*live_blocks(base, exclude=exclude), *_routed_networks()]
    candidates = [
        b for b in SUBNET_SPACE.subnets(new_prefix=BLOCK_PREFIX) if not any(b.overlaps(t) for t in taken)
    ]
    if not candidates:
        raise LeaseError(f"no free /{BLOCK_PREFIX} left in {SUBNET_SPACE} (routes or live leases use them)")
    return candidates[secrets.randbelow(len(candidates))]


def _routed_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination in the machine's routing tables, except default routes."""
    result = subprocess.run(
        ["ip", "-4", "-j", "route", "show", "table", "all"], capture_output=True, check=True, timeout=10
    )
    networks = []
    for route in json.loads(result.stdout or b"[]"):
        destination = str(route.get("dst", "default"))
        if destination == "default":
            continue
        with contextlib.suppress(ValueError):
            networks.append(ipaddress.IPv4Network(destination, strict=False))
    return networks


# -- giving things back ------------------------------------------------------------------------------


def _clean(path: Path, record: dict[str, object], *, run_before_kill: bool) -> Cleanup:
    cleanup = Cleanup()
    # Read the container ids first: the hook (Podman's `rm`) deletes their directories.
    ids = container_ids(record)
    hook = record.get("before_kill")
    if run_before_kill and isinstance(hook, dict):
        cleanup.problems += _run_hook(hook)
    cleanup.killed, problems = kill_processes_under(path, ids)
    cleanup.problems += problems
    cleanup.unmounted, problems = unmount_under(path)
    cleanup.problems += problems
    cleanup.problems += _remove_container_leftovers(record, ids)
    for bridge in _strings(record.get("bridges")):
        cleanup.problems += delete_link(bridge)
    certs = record.get("certs")
    for entry in certs if isinstance(certs, list) else []:
        if isinstance(entry, dict):
            cleanup.problems += _remove_cert_dir(Path(str(entry["dir"])), str(entry["sha256"]))
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        cleanup.problems.append(f"cannot remove {path}: {exc}")
    return cleanup


def container_ids(record: dict[str, object]) -> set[str]:
    """The ids of the containers an engine made: the 64-hex names in its recorded `container_dirs`."""
    ids: set[str] = set()
    for directory in _strings(record.get("container_dirs")):
        with contextlib.suppress(OSError):
            ids.update(entry.name for entry in os.scandir(directory) if _CONTAINER_ID.fullmatch(entry.name))
    return ids


def _remove_container_leftovers(record: dict[str, object], ids: set[str]) -> list[str]:
    """What containers killed behind their engine's back leave outside the lease directory: runc state
    (`runc_state_dirs`/<id>), containerd shim sockets (`shim_sockets`), empty cgroup directories."""
    problems = []
    for directory in _strings(record.get("runc_state_dirs")):
        for container_id in ids:
            try:
                shutil.rmtree(Path(directory, container_id))
            except FileNotFoundError:
                pass
            except OSError as exc:
                problems.append(f"cannot remove runc state {container_id[:12]}: {exc}")
    shims = record.get("shim_sockets")
    if isinstance(shims, dict):
        for container_id in ids:
            with contextlib.suppress(FileNotFoundError):
                shim_socket(str(shims["address"]), str(shims["namespace"]), container_id).unlink()
    problems += remove_cgroups(ids)
    return problems


def shim_socket(containerd_address: str, namespace: str, container_id: str) -> Path:
    """Where containerd 1.6 puts a shim's socket: /run/containerd/s/sha256(address/namespace/id)."""
    digest = hashlib.sha256(os.path.join(containerd_address, namespace, container_id).encode()).hexdigest()
    return _SHIM_SOCKET_ROOT / digest


def cgroups_of(ids: set[str]) -> list[Path]:
    """Cgroup directories (any hierarchy, 3 levels deep) named after one of `ids`, deepest first."""
    if not ids:
        return []
    found = []
    for hierarchy in _CGROUP_ROOT.iterdir() if _CGROUP_ROOT.is_dir() else ():
        for directory, subdirs, _files in os.walk(hierarchy):
            depth = len(Path(directory).relative_to(hierarchy).parts)
            if depth >= 3:
                subdirs.clear()
            if any(container_id in Path(directory).name for container_id in ids):
                found.append(Path(directory))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_cgroups(ids: set[str]) -> list[str]:
    problems = []
    for directory in cgroups_of(ids):
        try:
            directory.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"cannot remove cgroup {directory}: {exc.strerror}")
    return problems


def _run_hook(hook: dict[str, object]) -> list[str]:
    argv = _strings(hook.get("argv"))
    env = hook.get("env")
    if not argv:
        return []
    try:
        result = subprocess.run(
            argv,
            env={str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_HOOK_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"{argv[0]}: {exc}"]
    if result.returncode != 0:
        return [f"{' '.join(argv[:1] + argv[-4:])}: exit {result.returncode}: {result.stderr[-500:]!r}"]
    return []


def _strings(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def processes_under(path: Path, container_ids: Iterable[str] = ()) -> list[int]:
    """Processes whose command line names `path`, whose root or working directory is below it, or
    whose cgroup is named after one of `container_ids` (a container's processes live in their own
    mount namespace: their root shows as "/" from here)."""
    needle = os.fsencode(path)
    prefix = os.fsencode(path) + b"/"
    ids = [container_id.encode() for container_id in container_ids]
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as file:
                cmdline = file.read()
            if _is_zombie(int(entry.name)):
                continue
            links = []
            for link in ("root", "cwd"):
                with contextlib.suppress(OSError):
                    links.append(os.fsencode(os.readlink(f"/proc/{entry.name}/{link}")))
            cgroups = b""
            if ids:
                with open(f"/proc/{entry.name}/cgroup", "rb") as file:
                    cgroups = file.read()
        except OSError:
            continue
        if (
            needle in cmdline
            or any(link == needle or link.startswith(prefix) for link in links)
            or any(container_id in cgroups for container_id in ids)
        ):
            found.append(int(entry.name))
    return found


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return True
    return stat.rpartition(b")")[2].split()[:1] == [b"Z"]


def kill_processes_under(path: Path, container_ids: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """SIGKILL what `processes_under` finds and wait (bounded) until it is gone: (killed, problems)."""
    killed: dict[int, str] = {}
    ids = list(container_ids)
    deadline = time.monotonic() + _KILL_WAIT_S
    while True:
        pids = processes_under(path, ids)
        if not pids:
            return [f"{pid} {name}" for pid, name in killed.items()], []
        if time.monotonic() > deadline:
            return [f"{pid} {name}" for pid, name in killed.items()], [f"still alive under {path}: {pids}"]
        for pid in pids:
            killed.setdefault(pid, _process_name(pid))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path` in this mount namespace, deepest first."""
    prefix = str(path).rstrip("/") + "/"
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
        for line in file:
            point = _unescape_mount_path(line.split()[4])
            if point == str(path) or point.startswith(prefix):
                mounts.append(Path(point))
    return sorted(set(mounts), key=lambda p: (len(p.parts), str(p)), reverse=True)


def _unescape_mount_path(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1 : i + 4].isdigit() and len(text[i + 1 : i + 4]) == 3:
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def unmount_under(path: Path) -> tuple[list[Path], list[str]]:
    """Lazily unmount everything at or below `path`, stacked mounts too: (unmounted, problems)."""
    libc = ctypes.CDLL(None, use_errno=True)
    unmounted: list[Path] = []
    for _ in range(10):
        mounts = mounts_under(path)
        if not mounts:
            return unmounted, []
        for mount in mounts:
            if libc.umount2(os.fsencode(mount), _MNT_DETACH) == 0:
                unmounted.append(mount)
            else:
                error = ctypes.get_errno()
                if error not in (errno.EINVAL, errno.ENOENT):
                    log.warning("umount %s: %s", mount, os.strerror(error))
    left = mounts_under(path)
    return unmounted, ([f"still mounted: {', '.join(map(str, left))}"] if left else [])


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def delete_link(name: str) -> list[str]:
    if not link_exists(name):
        return []
    result = subprocess.run(["ip", "link", "delete", name], capture_output=True, timeout=10)
    if result.returncode != 0 and link_exists(name):
        return [f"ip link delete {name}: {result.stderr.decode(errors='replace').strip()}"]
    return []


def _remove_cert_dir(directory: Path, sha256: str) -> list[str]:
    """Remove a certs.d directory we wrote, unless someone has since written their own CA there."""
    ca = directory / "ca.crt"
    try:
        if hashlib.sha256(ca.read_bytes()).hexdigest() != sha256:
            return []
    except FileNotFoundError:
        pass
    try:
        shutil.rmtree(directory)
    except FileNotFoundError:
        pass
    except OSError as exc:
        return [f"cannot remove {directory}: {exc}"]
    return []


# -- locks -------------------------------------------------------------------------------------------


def _try_lock(lock_file: Path) -> int | None:
    """Lock `lock_file` if nobody holds it (creating it if missing); None when it is held."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        return None  # the directory went away under us
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _flock_with_deadline(fd: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise LeaseError(f"{what} stayed locked for {timeout} s") from None
            time.sleep(0.02)


def _read_record(path: Path) -> dict[str, object]:
    try:
        value = json.loads((path / "lease.json").read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
