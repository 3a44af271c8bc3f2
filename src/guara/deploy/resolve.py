"""Resolve an image for deploy: prove pull access and find the digest to pin, under one deadline.

GET the manifest (tag or digest) → if it is an index / manifest list, pick the wanted platform's entry
and GET that manifest by digest → GET its config blob (size-capped, digest-verified), which proves
the credentials can pull and tells the platform the image was built for.

What is pinned: the digest of the **platform manifest**, also when the reference names an index.
The Deployment then runs exactly the bytes checked here (that manifest and its config) on nodes of
that platform (the rendering adds a matching nodeSelector); pinning the index would let each node pick
a platform nobody verified. The index digest is kept as ``index_digest`` for the record.

Failures are mapped to the six preflight codes by the preflight's own mapping
(``guara.registry.preflight``), so Test Connection and deploy say the same thing for the same fault.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from guara.registry import (
    CloudKey,
    Credentials,
    ImageReference,
    ProtocolViolation,
    RegistryOptions,
    RegistrySession,
    ResponseTooLarge,
    is_digest,
)

# The preflight's mapping from registry failures to the six codes, reused on purpose: one mapping.
from guara.registry.preflight import PreflightCode, run_operation
from guara.registry.responses import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    load_json,
    printable,
)

from .errors import ImageUnusable, NotAContainerImage
from .platforms import PlatformSpec, platform_of, select_platform

logger = logging.getLogger("guara.deploy")

MAX_CONFIG_BYTES = 4 * 1024 * 1024
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
IMAGE_CONFIG_TYPES = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """A pull-checked image. ``pinned`` is ``registry/repository@digest``: what the workload runs."""

    reference: ImageReference
    digest: str
    index_digest: str | None
    platform: PlatformSpec
    config_digest: str
    with_credentials: bool
    elapsed_ms: int
    # The short-lived login a cloud key was exchanged for: what the runtime pulls with, this once.
    exchanged: Credentials | None = field(default=None, repr=False)

    @property
    def pinned(self) -> str:
        return f"{self.reference.registry}/{self.reference.repository}@{self.digest}"


@dataclass(frozen=True, slots=True)
class ResolveFailure:
    """Why the image could not be resolved: one of the six codes and a message for people.
    ``unusable`` is True when the registry answered fine but the image cannot run as asked (wrong
    platform, not a container image): access is not the problem then."""

    code: PreflightCode
    message: str
    elapsed_ms: int
    unusable: bool = False


Resolution = ResolvedImage | ResolveFailure


async def resolve_image(
    image: str,
    *,
    platform: PlatformSpec,
    options: RegistryOptions,
    registry: str | None = None,
    username: str | None = None,
    password: SecretStr | None = None,
    cloud_key: CloudKey | None = None,
) -> Resolution:
    """Resolve ``image`` for ``platform``; never raises for a registry failure (returns ResolveFailure).

    ``registry`` is the stored credentials' registry (it must be the image's; it may say ``http://``
    when plain HTTP is allowed). Everything goes through the network guard and one deadline
    (``options.timeout``).
    """
    started = time.monotonic()
    try:
        operation = await run_operation(
            image,
            lambda session: _resolve_in(session, platform),
            registry=registry,
            username=username,
            password=password,
            options=options,
            cloud_key=cloud_key,
        )
    except ImageUnusable as exc:
        elapsed_ms = int((time.monotonic() - started) * 1000)
        logger.info("resolve image=%s platform=%s unusable: %s", image, platform, exc)
        return ResolveFailure(PreflightCode.MANIFEST_NOT_FOUND, str(exc), elapsed_ms, unusable=True)
    context, found, elapsed_ms = operation.context, operation.value, operation.elapsed_ms
    if found is None:
        code = context.code or PreflightCode.NETWORK_ERROR
        result: Resolution = ResolveFailure(
            code, context.message or "the image could not be resolved", elapsed_ms
        )
    else:
        digest, index_digest, config_digest = found
        assert context.image is not None
        result = ResolvedImage(
            reference=context.image,
            digest=digest,
            index_digest=index_digest,
            platform=platform,
            config_digest=config_digest,
            with_credentials=context.credentials_given,
            elapsed_ms=elapsed_ms,
            exchanged=context.exchanged,
        )
    logger.info(
        "resolve registry=%s repository=%s platform=%s ok=%s code=%s elapsed_ms=%d",
        context.location.host if context.location else "-",
        context.image.repository if context.image else "-",
        platform,
        isinstance(result, ResolvedImage),
        getattr(result, "code", None) or "-",
        elapsed_ms,
    )
    return result


async def _resolve_in(session: RegistrySession, wanted: PlatformSpec) -> tuple[str, str | None, str]:
    """(pinned digest, index digest or None, config digest)."""
    top = await session.get_manifest()
    document = _json_object(top.raw, "manifest")
    media_type = _media_type(top.media_type, document)
    index_digest: str | None = None
    manifest_digest = top.digest
    if media_type in INDEX_TYPES:
        entry = select_platform(_entries(document), wanted)
        child_digest = entry.get("digest")
        if not isinstance(child_digest, str) or not is_digest(child_digest):
            raise ProtocolViolation("the image index lists a manifest without a valid digest")
        index_digest = top.digest
        child = await session.get_manifest(child_digest)
        document = _json_object(child.raw, "manifest")
        media_type = _media_type(child.media_type, document)
        if media_type in INDEX_TYPES:
            raise NotAContainerImage("the image index points to another index; guara pins one image manifest")
        manifest_digest = child.digest
    config_digest, config = await _image_config(session, document, media_type)
    built_for = platform_of(config)
    if built_for is not None and (built_for.os, built_for.architecture) != (wanted.os, wanted.architecture):
        raise ImageUnusable(
            f"the image is built for {built_for}, but the service runs on {wanted}: set the service's "
            f"platform to {built_for}, or push an image built for {wanted}"
        )
    return manifest_digest, index_digest, config_digest


@dataclass(frozen=True)
class ImagePlatforms:
    """The platforms an image is built for (an index lists several; a plain image, its config's one),
    or why they could not be read (``code`` set, ``platforms`` empty)."""

    platforms: tuple[str, ...]
    code: PreflightCode | None = None
    message: str = ""


async def image_platforms(
    image: str,
    *,
    options: RegistryOptions,
    registry: str | None = None,
    username: str | None = None,
    password: SecretStr | None = None,
    cloud_key: CloudKey | None = None,
) -> ImagePlatforms:
    """Read which platforms ``image`` offers, through the network guard under one deadline, like
    ``resolve_image``; never raises for a registry failure."""
    try:
        operation = await run_operation(
            image,
            _platforms_in,
            registry=registry,
            username=username,
            password=password,
            cloud_key=cloud_key,
            options=options,
        )
    except ImageUnusable as exc:
        return ImagePlatforms((), PreflightCode.MANIFEST_NOT_FOUND, str(exc))
    if operation.value is None:
        context = operation.context
        code = context.code or PreflightCode.NETWORK_ERROR
        return ImagePlatforms((), code, context.message or "the image could not be read")
    return ImagePlatforms(operation.value)


async def _platforms_in(session: RegistrySession) -> tuple[str, ...]:
    top = await session.get_manifest()
    document = _json_object(top.raw, "manifest")
    media_type = _media_type(top.media_type, document)
    if media_type in INDEX_TYPES:
        found = (platform_of(entry.get("platform")) for entry in _entries(document))
        # Attestations and other non-images are listed as unknown/unknown.
        return tuple(dict.fromkeys(str(p) for p in found if p is not None and p.os != "unknown"))
    _digest, config = await _image_config(session, document, media_type)
    built_for = platform_of(config)
    return (str(built_for),) if built_for is not None else ()


async def _image_config(
    session: RegistrySession, document: Mapping[str, Any], media_type: str | None
) -> tuple[str, dict[str, Any]]:
    """The config (digest and JSON) of an image manifest; NotAContainerImage for anything else."""
    if media_type not in IMAGE_MANIFEST_TYPES:
        raise NotAContainerImage(
            f"the reference names a {printable(media_type or 'manifest of unknown type', 100)}, "
            "not a container image "
            "(schema-1 manifests are not supported: push the image again with a current client)"
        )
    config_digest, config_type, config_size = _config_descriptor(document)
    if config_type not in IMAGE_CONFIG_TYPES:
        raise NotAContainerImage(
            f"the reference names an artifact of type {printable(config_type, 100)}, not a container image"
        )
    if config_size > MAX_CONFIG_BYTES:
        raise ResponseTooLarge(f"the image config is {config_size} bytes, over the {MAX_CONFIG_BYTES} limit")
    config = await session.get_blob(config_digest, MAX_CONFIG_BYTES)
    return config_digest, _json_object(config, "image config")


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = load_json(raw)
    except ValueError as exc:
        raise ProtocolViolation(f"the {what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise ProtocolViolation(f"the {what} is not a JSON object")
    return value


def _media_type(header: str | None, document: Mapping[str, Any]) -> str | None:
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if header:
        return header
    # OCI allows mediaType to be absent; the shape tells.
    if "manifests" in document:
        return OCI_INDEX
    if "config" in document:
        return OCI_MANIFEST
    return None


def _entries(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entries = document.get("manifests")
    if not isinstance(entries, list):
        raise ProtocolViolation("the image index has no manifests list")
    return [entry for entry in entries if isinstance(entry, Mapping)]


def _config_descriptor(document: Mapping[str, Any]) -> tuple[str, str, int]:
    config = document.get("config")
    if not isinstance(config, Mapping):
        raise ProtocolViolation("the image manifest has no config descriptor")
    digest, media_type, size = config.get("digest"), config.get("mediaType"), config.get("size")
    if not isinstance(digest, str) or not is_digest(digest):
        raise ProtocolViolation("the image manifest's config has no valid digest")
    if not isinstance(media_type, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ProtocolViolation("the image manifest's config descriptor is malformed")
    return digest, media_type, size
