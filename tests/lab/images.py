"""Small, deterministic container images: config blob, one gzip tar layer, manifest and index bytes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

ManifestFormat = Literal["oci", "docker"]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# The Accept list a registry client must send to see every kind of image the lab holds.
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))

_MEDIA_TYPES: dict[ManifestFormat, tuple[str, str, str, str]] = {
    # format: (index, manifest, config, layer)
    "oci": (OCI_INDEX, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP),
    "docker": (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP),
}
_EPOCH = "1970-01-01T00:00:00Z"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse `linux/arm64` or `linux/arm/v7`."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform must look like os/arch[/variant], got {text!r}")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def as_json(self) -> dict[str, str]:
        value = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            value["variant"] = self.variant
        return value


@dataclass(frozen=True)
class FileEntry:
    """A regular file of a layer with an explicit mode (plain `bytes` in a layer mean mode 0o644)."""

    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class SymlinkEntry:
    """A symbolic link of a layer, pointing at `target` (relative or absolute, as in the image)."""

    target: str


@dataclass(frozen=True)
class DirEntry:
    """A directory of a layer (engines create missing parents themselves; this one gets `mode`)."""

    mode: int = 0o755


LayerEntry = bytes | FileEntry | SymlinkEntry | DirEntry

DEFAULT_RUN_CONFIG: Mapping[str, object] = {
    "Cmd": ["/bin/true"],
    "Env": ["PATH=/usr/bin:/bin"],
    "Labels": {"lab": "guara"},
}


@dataclass(frozen=True)
class BuiltImage:
    """Everything to push for one single-platform image; `manifest` holds the exact bytes to PUT."""

    config: Blob
    layers: tuple[Blob, ...]
    manifest: Blob
    platform: Platform

    @property
    def digest(self) -> str:
        return self.manifest.digest


@dataclass(frozen=True)
class Layer:
    """A gzip tar layer built once and shared by several images (`diff_id`: digest of the plain tar)."""

    data: bytes
    diff_id: str


def build_layer(files: Mapping[str, LayerEntry]) -> Layer:
    """A deterministic gzip tar of `files` (path -> content or entry)."""
    tar_bytes = _tar(files)
    return Layer(data=gzip.compress(tar_bytes, mtime=0), diff_id=sha256_digest(tar_bytes))


def build_image(
    files: Mapping[str, LayerEntry],
    *,
    platform: Platform,
    manifest_format: ManifestFormat = "oci",
    run_config: Mapping[str, object] = DEFAULT_RUN_CONFIG,
    base_layers: Sequence[Layer] = (),
) -> BuiltImage:
    """An image whose top layer holds `files` (path -> content or entry), above `base_layers`.

    `run_config` is the image config's `config` object (`Cmd`, `Env`, `ExposedPorts`, `Labels`, ...).
    """
    _, manifest_type, config_type, layer_type = _MEDIA_TYPES[manifest_format]
    layers = (*base_layers, build_layer(files))
    config_json = {
        "architecture": platform.architecture,
        "os": platform.os,
        **({"variant": platform.variant} if platform.variant else {}),
        "created": _EPOCH,
        "config": dict(run_config),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": _EPOCH, "created_by": "guara test lab"} for _ in layers],
    }
    config = Blob(config_type, _json_bytes(config_json))
    blobs = tuple(Blob(layer_type, layer.data) for layer in layers)
    manifest_json = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config.descriptor(),
        "layers": [blob.descriptor() for blob in blobs],
    }
    manifest = Blob(manifest_type, _json_bytes(manifest_json))
    return BuiltImage(config=config, layers=blobs, manifest=manifest, platform=platform)


def build_index(images: Sequence[BuiltImage], *, manifest_format: ManifestFormat = "oci") -> Blob:
    """A multi-platform index (OCI) or manifest list (Docker) over `images`."""
    index_type = _MEDIA_TYPES[manifest_format][0]
    entries = [{**image.manifest.descriptor(), "platform": image.platform.as_json()} for image in images]
    return Blob(index_type, _json_bytes({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}))


def _tar(files: Mapping[str, LayerEntry]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files):
            entry = files[name]
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if isinstance(entry, SymlinkEntry):
                info.type = tarfile.SYMTYPE
                info.linkname = entry.target
                info.mode = 0o777
                archive.addfile(info)
            elif isinstance(entry, DirEntry):
                info.type = tarfile.DIRTYPE
                info.mode = entry.mode
                archive.addfile(info)
            else:
                data, info.mode = (entry, 0o644) if isinstance(entry, bytes) else (entry.data, entry.mode)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, indent=2, sort_keys=False).encode()
