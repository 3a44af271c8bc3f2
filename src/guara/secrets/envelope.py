"""Sealing secrets into envelopes, and opening them.

Envelope format ``gs1`` (one ASCII string, fits a text column)::

    gs1.<key version>.<nonce>.<ciphertext and tag>

- ``gs1``: format tag. The format is append-only: ``gs1`` is never reinterpreted; a change of layout
  gets a new tag (``gs2``) and readers keep opening ``gs1``.
- key version: decimal, no leading zeros, 1 to 999999999: the master-key version that sealed it.
- nonce: 12 random bytes (fresh for every seal), base64url without padding (16 characters).
- ciphertext and tag: AES-256-GCM output (ciphertext, then the 16-byte tag), base64url without padding.

The AES key is the project key of that version (see ``derivation``). The associated data binds the
envelope to its place and header::

    b"gs1" || uint32_be(key version) || for each of project id, service id, field:
                                         uint32_be(len(utf8)) || utf8

Opening checks every character: base64 must be canonical, so no two strings open to the same secret,
and any change to the header, nonce, ciphertext, tag, or the (project, service, field) it is opened
under raises UnreadableSecret. Nothing is ever returned from an envelope that fails.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from pydantic import SecretStr

from guara.secrets.derivation import ProjectKeys
from guara.secrets.errors import InvalidSecretInput, UnreadableReason, UnreadableSecret

FORMAT_TAG = "gs1"
NONCE_BYTES = 12
TAG_BYTES = 16

_GS1 = re.compile(r"gs1\.([1-9][0-9]{0,8})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22,})", re.ASCII)
_ANY_FORMAT_TAG = re.compile(r"gs[0-9]+\.", re.ASCII)


@dataclass(frozen=True, slots=True)
class _Envelope:
    key_version: int
    nonce: bytes
    sealed: bytes  # ciphertext followed by the tag


def seal(
    keys: ProjectKeys,
    plaintext: SecretStr,
    *,
    project_id: str,
    service_id: str,
    field: str,
    version: int | None = None,
) -> str:
    """Encrypt ``plaintext`` for one field of one service; ``version`` defaults to the current one.

    Raises MasterKeyError when the keyring lacks ``version``, InvalidSecretInput on empty ids.
    """
    return _seal_with_nonce(
        keys,
        plaintext,
        project_id=project_id,
        service_id=service_id,
        field=field,
        version=version,
        nonce=os.urandom(NONCE_BYTES),
    )


def open_secret(
    keys: ProjectKeys, envelope: str, *, project_id: str, service_id: str, field: str
) -> SecretStr:
    """Decrypt an envelope sealed for exactly this (project, service, field); else UnreadableSecret."""
    parsed = _parse(envelope)
    associated_data = _associated_data(parsed.key_version, project_id, service_id, field)
    if parsed.key_version not in keys.keyring:
        raise UnreadableSecret(UnreadableReason.UNKNOWN_KEY_VERSION, key_version=parsed.key_version)
    try:
        data = keys.aead(project_id, parsed.key_version).decrypt(parsed.nonce, parsed.sealed, associated_data)
    except InvalidTag as exc:
        raise UnreadableSecret(
            UnreadableReason.AUTHENTICATION_FAILED, key_version=parsed.key_version
        ) from exc
    try:
        return SecretStr(data.decode("utf-8"))
    except UnicodeDecodeError:
        # Authentic but not UTF-8: never written by seal(); refuse rather than guess.
        raise UnreadableSecret(UnreadableReason.MALFORMED, key_version=parsed.key_version) from None


def reseal(
    keys: ProjectKeys,
    envelope: str,
    *,
    project_id: str,
    service_id: str,
    field: str,
    to_version: int | None = None,
) -> str:
    """Re-encrypt an envelope under ``to_version`` (default: the current version).

    The envelope is always opened first, so a damaged one raises UnreadableSecret here too. When it is
    already at ``to_version`` the same string is returned, so callers can skip writing unchanged rows.
    """
    target = keys.keyring.current_version if to_version is None else to_version
    keys.keyring.master_key(target)  # an unknown target is a MasterKeyError before any work
    plaintext = open_secret(keys, envelope, project_id=project_id, service_id=service_id, field=field)
    if envelope_key_version(envelope) == target:
        return envelope
    return seal(keys, plaintext, project_id=project_id, service_id=service_id, field=field, version=target)


def envelope_key_version(envelope: str) -> int:
    """The master-key version that sealed ``envelope``; UnreadableSecret when it is not well-formed."""
    return _parse(envelope).key_version


def _seal_with_nonce(
    keys: ProjectKeys,
    plaintext: SecretStr,
    *,
    project_id: str,
    service_id: str,
    field: str,
    version: int | None,
    nonce: bytes,
) -> str:
    """seal() with the nonce supplied: the seam for known-answer tests. Never reuse a nonce."""
    if not isinstance(plaintext, SecretStr):
        raise InvalidSecretInput("the plaintext must be a pydantic SecretStr")
    key_version = keys.keyring.current_version if version is None else version
    associated_data = _associated_data(key_version, project_id, service_id, field)
    try:
        data = plaintext.get_secret_value().encode("utf-8")
    except UnicodeEncodeError:
        # Not chained: the UnicodeEncodeError carries the whole plaintext in its .object.
        raise InvalidSecretInput("the secret is not valid Unicode text (it holds a lone surrogate)") from None
    sealed = keys.aead(project_id, key_version).encrypt(nonce, data, associated_data)
    return f"{FORMAT_TAG}.{key_version}.{_b64encode(nonce)}.{_b64encode(sealed)}"


def _associated_data(key_version: int, project_id: str, service_id: str, field: str) -> bytes:
    parts = [FORMAT_TAG.encode("ascii"), key_version.to_bytes(4, "big")]
    for name, value in (("project id", project_id), ("service id", service_id), ("field", field)):
        if not isinstance(value, str) or not value:
            raise InvalidSecretInput(f"{name} must be a non-empty string")
        try:
            encoded = value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidSecretInput(f"{name} is not valid Unicode text") from None
        parts += [len(encoded).to_bytes(4, "big"), encoded]
    return b"".join(parts)


def _parse(envelope: str) -> _Envelope:
    if not isinstance(envelope, str) or not envelope.isascii():
        raise UnreadableSecret(UnreadableReason.MALFORMED)
    match = _GS1.fullmatch(envelope)
    if match is None:
        if _ANY_FORMAT_TAG.match(envelope) and not envelope.startswith(f"{FORMAT_TAG}."):
            raise UnreadableSecret(UnreadableReason.UNSUPPORTED_FORMAT)
        raise UnreadableSecret(UnreadableReason.MALFORMED)
    key_version = int(match[1])
    nonce = _b64decode(match[2], key_version)
    sealed = _b64decode(match[3], key_version)
    if len(nonce) != NONCE_BYTES or len(sealed) < TAG_BYTES:
        raise UnreadableSecret(UnreadableReason.MALFORMED, key_version=key_version)
    return _Envelope(key_version=key_version, nonce=nonce, sealed=sealed)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str, key_version: int) -> bytes:
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise UnreadableSecret(UnreadableReason.MALFORMED, key_version=key_version) from exc
    if _b64encode(data) != text:
        # Unused low bits in the last character were set: a non-canonical spelling is an alteration.
        raise UnreadableSecret(UnreadableReason.MALFORMED, key_version=key_version)
    return data
