"""Platforms (``os/architecture[/variant]``) and picking one manifest out of an index.

Matching follows what container runtimes do (containerd's platform matcher): architecture aliases
fold (``x86_64`` is ``amd64``, ``aarch64`` is ``arm64``), ``arm64`` without a variant is ``v8`` and
``arm`` without one is ``v7``; entries for other operating systems (and the ``unknown/unknown``
attestation entries of buildx) never match.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidPlatform, NoMatchingPlatform

DEFAULT_PLATFORM = "linux/amd64"
MAX_LISTED = 10  # platforms named in a message; an index may list thousands

_PART = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}\Z")
# The same rule for whole strings, any case (schemas state it with this).
PLATFORM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}(/[A-Za-z0-9][A-Za-z0-9._-]{0,31}){1,2}$"
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386", "i686": "386"}
_DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7"}


@dataclass(frozen=True, slots=True)
class PlatformSpec:
    """A normalised platform. ``variant`` is None when the architecture has no default variant."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        # arm64/v8 is written linux/arm64, as everyone does.
        if self.variant and self.variant != _DEFAULT_VARIANTS.get(self.architecture):
            text += f"/{self.variant}"
        return text


def parse_platform(text: str) -> PlatformSpec:
    """``linux/amd64``, ``linux/arm64``, ``linux/arm/v7``; raise InvalidPlatform otherwise."""
    parts = text.lower().split("/") if isinstance(text, str) else []
    if len(parts) not in (2, 3) or not all(_PART.match(part) for part in parts):
        raise InvalidPlatform(
            f"the platform must look like os/architecture[/variant], e.g. {DEFAULT_PLATFORM}"
        )
    return normalise(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def normalise(os_name: str, architecture: str, variant: str | None) -> PlatformSpec:
    architecture = _ARCH_ALIASES.get(architecture.lower(), architecture.lower())
    variant = (variant or "").lower() or _DEFAULT_VARIANTS.get(architecture)
    if architecture == "arm64" and variant == "8":
        variant = "v8"
    return PlatformSpec(os_name.lower(), architecture, variant)


def platform_of(value: Any) -> PlatformSpec | None:
    """The platform of an index entry's ``platform`` object or of an image config; None if absent."""
    if not isinstance(value, Mapping):
        return None
    os_name = value.get("os")
    architecture = value.get("architecture")
    variant = value.get("variant")
    if not isinstance(os_name, str) or not isinstance(architecture, str):
        return None
    parts = [os_name, architecture] + ([variant] if isinstance(variant, str) and variant else [])
    # The registry wrote these: anything that is not a plain platform word is not a platform we list.
    if not all(_PART.match(part.lower()) for part in parts):
        return None
    return normalise(os_name, architecture, variant if isinstance(variant, str) else None)


def select_platform(entries: Sequence[Mapping[str, Any]], wanted: PlatformSpec) -> Mapping[str, Any]:
    """The index entry for ``wanted``: exact variant first; with no variant wanted or defaulted, any
    variant of the architecture (the first listed). Raise NoMatchingPlatform, naming what exists."""
    fallback: Mapping[str, Any] | None = None
    available: list[str] = []
    for entry in entries:
        platform = platform_of(entry.get("platform"))
        if platform is None or platform.os == "unknown":
            continue
        available.append(str(platform))
        if platform.os != wanted.os or platform.architecture != wanted.architecture:
            continue
        if platform.variant == wanted.variant:
            return entry
        if wanted.variant is None and fallback is None:
            fallback = entry
    if fallback is not None:
        return fallback
    unique = list(dict.fromkeys(available))
    listed = ", ".join(unique[:MAX_LISTED]) or "no runnable platform"
    if len(unique) > MAX_LISTED:
        listed += f" and {len(unique) - MAX_LISTED} more"
    raise NoMatchingPlatform(
        f"the image has no {wanted} variant (it has: {listed}); set the service's platform to one of "
        f"these, or push an image built for {wanted}",
        wanted=str(wanted),
        available=tuple(dict.fromkeys(available)),
    )
