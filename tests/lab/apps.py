"""Runnable private images for the engine tests, built from Debian's static busybox.

Every image has two layers: a shared base (`bin/busybox` and applet symlinks) and a small top layer.
They are pushed to the lab's Basic and token registries (never the anonymous one: pulling them needs
credentials):

- `acme/app:v1`, `acme/app:v2`: busybox `httpd` on 8080/tcp serving `/www/index.html` (`APP_BODIES`);
- `acme/crash:v1`: prints `CRASH_STDOUT` and `CRASH_STDERR`, then exits with `CRASH_EXIT_CODE` at once;
- `acme/app-multi:v1`: an OCI index: this machine's platform (runnable, serves its own body) and a
  second, foreign platform (arm64, or amd64 on an arm64 machine) that is not runnable here.

The app's PID 1 is `sh`, which traps SIGTERM and exits 0: busybox `httpd` as PID 1 would ignore
SIGTERM (PID 1 has no default handlers) and every stop would wait for the engine's kill timeout.
"""

from __future__ import annotations

import platform as host_platform
import struct
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.images import (
    BuiltImage,
    DirEntry,
    FileEntry,
    Layer,
    LayerEntry,
    Platform,
    SymlinkEntry,
    build_image,
    build_layer,
)
from tests.lab.lab import ALICE_PASSWORD, Lab
from tests.lab.registry import LabRegistry

BUSYBOX_BINARY = Path("/bin/busybox")

APP_V1 = "acme/app:v1"
APP_V2 = "acme/app:v2"
CRASH_V1 = "acme/crash:v1"
APP_MULTI_V1 = "acme/app-multi:v1"
APP_PORT = "8080/tcp"

APP_BODIES: Mapping[str, str] = {
    APP_V1: "guara test app v1\n",
    APP_V2: "guara test app v2 (another body)\n",
    APP_MULTI_V1: "guara test app-multi v1\n",
}
CRASH_STDOUT: tuple[str, ...] = ("guara crash: starting", "guara crash: reading configuration")
CRASH_STDERR: tuple[str, ...] = ("guara crash: fatal: configuration missing",)
CRASH_EXIT_CODE = 3

# Applets linked into /bin (busybox picks the applet from argv[0]).
_APPLETS = ("sh", "httpd", "echo", "cat", "ls", "sleep", "true", "false", "env", "id", "ps", "kill", "wget")
_APP_CMD = ["/bin/sh", "-c", "trap 'exit 0' TERM; /bin/httpd -f -p 8080 -h /www & wait"]
_ENV = ["PATH=/bin"]
_MACHINE_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class BusyboxUnavailable(RuntimeError):
    """/bin/busybox is missing or is not a static binary (Debian package busybox-static)."""


@dataclass(frozen=True)
class AppRegistry:
    """The app images in one lab registry, and the account that may pull them.

    `digests` maps "repo:tag" to the digest pushed under that tag (for `acme/app-multi:v1`: the index);
    `platforms` maps the platforms of `acme/app-multi:v1` to their image digests.
    """

    registry: LabRegistry
    username: str
    password: str = field(repr=False)
    digests: Mapping[str, str]
    platforms: Mapping[str, str]

    @property
    def host(self) -> str:
        return self.registry.host

    def ref(self, repo_tag: str) -> str:
        """The pull reference by digest: `127.0.0.1:PORT/acme/app@sha256:...`."""
        repository = repo_tag.rpartition(":")[0]
        return f"{self.registry.host}/{repository}@{self.digests[repo_tag]}"

    def tag_ref(self, repo_tag: str) -> str:
        """The pull reference by tag: `127.0.0.1:PORT/acme/app:v1`."""
        return self.registry.ref(repo_tag)

    def auth_config(self, *, password: str | None = None) -> dict[str, str]:
        """`auth_config=` for the Docker SDK (sent as `X-Registry-Auth`); `password` overrides."""
        return {"username": self.username, "password": self.password if password is None else password}


@dataclass(frozen=True)
class AppImages:
    """The runnable images of the session, identical (same digests) in both registries."""

    platform: str
    basic: AppRegistry
    token: AppRegistry
    port: str = APP_PORT
    bodies: Mapping[str, str] = field(default_factory=lambda: dict(APP_BODIES))
    crash_stdout: tuple[str, ...] = CRASH_STDOUT
    crash_stderr: tuple[str, ...] = CRASH_STDERR
    crash_exit_code: int = CRASH_EXIT_CODE

    @property
    def registries(self) -> tuple[AppRegistry, AppRegistry]:
        return (self.basic, self.token)


def machine_platform() -> Platform:
    """This machine's platform as images name it (`linux/amd64`, `linux/arm64`)."""
    machine = host_platform.machine()
    return Platform("linux", _MACHINE_ARCHITECTURES.get(machine, machine))


def foreign_platform(native: Platform) -> Platform:
    """The index's second platform: arm64, or amd64 when this machine is arm64."""
    return Platform("linux", "amd64" if native.architecture == "arm64" else "arm64")


def busybox_problem(binary: Path = BUSYBOX_BINARY) -> str | None:
    """Why `binary` cannot be the images' base (missing, not ELF, dynamically linked), or None."""
    try:
        head = binary.read_bytes()[:65536]
    except OSError as exc:
        return f"{binary} is unreadable ({exc.strerror}); install Debian's busybox-static"
    if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        return f"{binary} is not a 64-bit little-endian ELF file"
    (phoff,) = struct.unpack_from("<Q", head, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
    for index in range(phnum):
        (p_type,) = struct.unpack_from("<I", head, phoff + index * phentsize)
        if p_type == 3:  # PT_INTERP: needs a dynamic loader the image does not have
            return f"{binary} is dynamically linked; install busybox-static instead of busybox"
    return None


def busybox_layer(binary: Path = BUSYBOX_BINARY) -> Layer:
    """The shared base layer: `bin/busybox` and its applet symlinks."""
    problem = busybox_problem(binary)
    if problem is not None:
        raise BusyboxUnavailable(problem)
    files: dict[str, LayerEntry] = {
        "bin": DirEntry(),
        "bin/busybox": FileEntry(binary.read_bytes(), mode=0o755),
    }
    files.update({f"bin/{applet}": SymlinkEntry("busybox") for applet in _APPLETS})
    return build_layer(files)


def _app(base: Layer, body: str, native: Platform) -> BuiltImage:
    return build_image(
        {"www": DirEntry(), "www/index.html": body.encode()},
        platform=native,
        base_layers=(base,),
        run_config={
            "Cmd": _APP_CMD,
            "Env": _ENV,
            "ExposedPorts": {APP_PORT: {}},
            "WorkingDir": "/",
            "Labels": {"lab": "guara"},
        },
    )


def _crash(base: Layer, native: Platform) -> BuiltImage:
    script = "; ".join(
        [*(f"echo '{line}'" for line in CRASH_STDOUT), *(f"echo '{line}' >&2" for line in CRASH_STDERR)]
    )
    return build_image(
        {"etc/guara-crash": b"acme/crash:v1\n"},
        platform=native,
        base_layers=(base,),
        run_config={
            "Cmd": ["/bin/sh", "-c", f"{script}; exit {CRASH_EXIT_CODE}"],
            "Env": _ENV,
            "Labels": {"lab": "guara"},
        },
    )


@dataclass(frozen=True)
class _Built:
    app_v1: BuiltImage
    app_v2: BuiltImage
    crash_v1: BuiltImage
    multi_children: tuple[BuiltImage, ...]


def _build(native: Platform) -> _Built:
    base = busybox_layer()
    foreign = foreign_platform(native)
    not_runnable = build_image({"etc/lab-image": f"{APP_MULTI_V1} {foreign}\n".encode()}, platform=foreign)
    return _Built(
        app_v1=_app(base, APP_BODIES[APP_V1], native),
        app_v2=_app(base, APP_BODIES[APP_V2], native),
        crash_v1=_crash(base, native),
        multi_children=(_app(base, APP_BODIES[APP_MULTI_V1], native), not_runnable),
    )


def _push(registry: LabRegistry, built: _Built, username: str, password: str) -> AppRegistry:
    digests = {
        APP_V1: registry.push_built_image(APP_V1, built.app_v1),
        APP_V2: registry.push_built_image(APP_V2, built.app_v2),
        CRASH_V1: registry.push_built_image(CRASH_V1, built.crash_v1),
        APP_MULTI_V1: registry.push_built_index(APP_MULTI_V1, built.multi_children),
    }
    return AppRegistry(
        registry=registry,
        username=username,
        password=password,
        digests=digests,
        platforms=dict(registry.platforms[APP_MULTI_V1]),
    )


def push_app_images(lab: Lab) -> AppImages:
    """Build the images once and push them to the Basic and token registries (as alice, who may pull)."""
    native = machine_platform()
    built = _build(native)
    for account in (lab.basic, lab.token):
        if account.users.get("alice") != ALICE_PASSWORD:
            raise RuntimeError(f"lab registry {account.name!r} has no user alice with the lab password")
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="lab-apps") as pool:
        basic = pool.submit(_push, lab.basic, built, "alice", ALICE_PASSWORD)
        token = pool.submit(_push, lab.token, built, "alice", ALICE_PASSWORD)
        return AppImages(platform=str(native), basic=basic.result(), token=token.result())
