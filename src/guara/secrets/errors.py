"""Errors raised by guara.secrets.

Error tree (catch the root to handle every failure of this package)::

    SecretsError                  root of every secrets error
     ├── MasterKeyError           master key material is missing, malformed or unsafe: a bad
     │                            GUARA_MASTER_KEY value, an unreadable key file, a key file whose
     │                            mode is broader than 0600, or a key version the keyring lacks
     │                            when sealing
     ├── UnreadableSecret         an envelope cannot be opened; ``.reason`` says why
     │                            (malformed, unsupported_format, unknown_key_version,
     │                            authentication_failed) and ``.key_version`` which version
     │                            sealed it, when that much could be read
     └── InvalidSecretInput       the caller passed something that cannot be sealed: an empty
                                  project, service or field id, or text that is not valid Unicode
                                  (also a ``ValueError``)

No message ever contains key bytes, plaintext, or any part of the key text the operator supplied:
messages name the source (environment, a file path and line number), the version numbers and the
reason only.
"""

from __future__ import annotations

from enum import StrEnum


class SecretsError(Exception):
    """Root of every error guara.secrets raises."""


class MasterKeyError(SecretsError):
    """Master key material is missing, malformed, unsafe, or lacks a requested version."""


class UnreadableReason(StrEnum):
    """Why an envelope could not be opened."""

    MALFORMED = "malformed"
    UNSUPPORTED_FORMAT = "unsupported_format"
    UNKNOWN_KEY_VERSION = "unknown_key_version"
    AUTHENTICATION_FAILED = "authentication_failed"


_EXPLANATIONS = {
    UnreadableReason.MALFORMED: "the envelope is not a well-formed guara secret envelope",
    UnreadableReason.UNSUPPORTED_FORMAT: "the envelope uses a format version this guara does not know",
    UnreadableReason.UNKNOWN_KEY_VERSION: "the keyring holds no master key of the version that sealed it",
    UnreadableReason.AUTHENTICATION_FAILED: (
        "authentication failed (wrong project, service or field, wrong master key, "
        "or the envelope was altered)"
    ),
}


class UnreadableSecret(SecretsError):
    """An envelope cannot be opened; nothing of its content is returned."""

    def __init__(self, reason: UnreadableReason, *, key_version: int | None = None) -> None:
        self.reason = reason
        self.key_version = key_version
        version = f" (key version {key_version})" if key_version is not None else ""
        super().__init__(f"secret cannot be opened{version}: {_EXPLANATIONS[reason]}")


class InvalidSecretInput(SecretsError, ValueError):
    """The arguments of a seal or open call cannot be used (never says what the plaintext was)."""
