"""Reading registry answers: error bodies, Retry-After, digests, manifest media types."""

from __future__ import annotations

import email.utils
import hashlib
import json
import re
import time
from typing import Any

from .errors import Diagnostic

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
# Leave OCI out and distribution answers a false 404 for OCI images.
MANIFEST_MEDIA_TYPES: tuple[str, ...] = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)

_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST = re.compile(r"(sha256|sha384|sha512):([a-f0-9]+)\Z")

MAX_DIAGNOSTICS = 8
MAX_DIAGNOSTIC_TEXT = 200


def is_digest(text: str) -> bool:
    """``algorithm:hex`` with a supported algorithm and the right length."""
    match = _DIGEST.match(text)
    return match is not None and len(match.group(2)) == _DIGEST_LENGTHS[match.group(1)]


def compute_digest(content: bytes, algorithm: str = "sha256") -> str:
    if algorithm not in _DIGEST_LENGTHS:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, content).hexdigest()}"


def digest_algorithm(digest: str) -> str:
    return digest.partition(":")[0]


def load_json(body: bytes) -> Any:
    """JSON from a remote answer. Raises ValueError for anything unusable, including nesting deep
    enough to exhaust the parser (RecursionError): a hostile server must not turn into a crash."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def parse_diagnostics(body: bytes) -> tuple[Diagnostic, ...]:
    """The ``errors`` array of an OCI error body; empty when the body is not one. Texts are cut short
    (a registry could echo anything back) and limited in number."""
    try:
        data = load_json(body)
    except ValueError:
        return ()
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return ()
    diagnostics: list[Diagnostic] = []
    for item in errors[:MAX_DIAGNOSTICS]:
        if not isinstance(item, dict):
            continue
        code = item.get("code")
        message = item.get("message")
        if not isinstance(code, str) or not code:
            continue
        diagnostics.append(
            Diagnostic(
                code=printable(code, 64).upper(),
                message=printable(message, MAX_DIAGNOSTIC_TEXT) if isinstance(message, str) else "",
            )
        )
    return tuple(diagnostics)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True, and float() refuses it
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


def media_type_of(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.partition(";")[0].strip().lower() or None


def printable(text: str, limit: int) -> str:
    """Text a server sent, safe to show and log: control characters blanked, at most ``limit`` long."""
    shown = "".join(c if c.isprintable() else " " for c in text[: limit + 1])
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
