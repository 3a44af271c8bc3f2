"""Secrets at rest and in logs.

- Master keys: ``load_keyring`` (``GUARA_MASTER_KEY`` wins over the key file), ``ensure_key_file``
  (development default, mode 0600), ``append_key_version`` (rotation), all giving a ``MasterKeyring``.
- Sealing: ``seal`` / ``open_secret`` / ``reseal`` with AES-256-GCM under per-project HKDF keys held by a
  short-lived ``ProjectKeys``; envelopes are ASCII strings that record their key version
  (``envelope_key_version``).
- Logs: ``install_log_redaction`` attaches ``RedactingFilter``; ``register_secret`` inside
  ``secret_scope()`` scrubs one request's exact secrets.

A pure library: no database, no web framework, no settings import. Formats are documented in
``keyring`` (key file), ``derivation`` (HKDF) and ``envelope`` (envelope); errors in ``errors``.
"""

from guara.secrets.derivation import ProjectKeys
from guara.secrets.envelope import envelope_key_version, open_secret, reseal, seal
from guara.secrets.errors import (
    InvalidSecretInput,
    MasterKeyError,
    SecretsError,
    UnreadableReason,
    UnreadableSecret,
)
from guara.secrets.keyring import MasterKeyring, append_key_version, ensure_key_file, load_keyring
from guara.secrets.redaction import (
    REDACTED,
    RedactingFilter,
    install_log_redaction,
    redact_text,
    register_secret,
    secret_scope,
)

__all__ = [
    "REDACTED",
    "InvalidSecretInput",
    "MasterKeyError",
    "MasterKeyring",
    "ProjectKeys",
    "RedactingFilter",
    "SecretsError",
    "UnreadableReason",
    "UnreadableSecret",
    "append_key_version",
    "ensure_key_file",
    "envelope_key_version",
    "install_log_redaction",
    "load_keyring",
    "open_secret",
    "redact_text",
    "register_secret",
    "reseal",
    "seal",
    "secret_scope",
]
