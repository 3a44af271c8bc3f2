"""Per-project keys: HKDF-SHA256 over the master key of one version.

    project key = HKDF-SHA256(IKM = master key of version v, salt = HKDF_SALT,
                              info = "guara/project/<project id>/v<v>", L = 32)

The salt is fixed and public (domain separation, RFC 5869 §3.1); the info binds the key to one project
and one master-key version, so no two projects, and no two versions, share a key. The info is
unambiguous: the version is the last "/v<digits>" segment and the rest is the project id.
"""

from __future__ import annotations

from typing import NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from guara.secrets.errors import InvalidSecretInput
from guara.secrets.keyring import MasterKeyring

HKDF_SALT = b"guara/secrets/hkdf-salt/v1"
PROJECT_KEY_BYTES = 32


def project_key_info(project_id: str, version: int) -> bytes:
    """The HKDF info string for one project and master-key version."""
    if not isinstance(project_id, str) or not project_id:
        raise InvalidSecretInput("project id must be a non-empty string")
    try:
        return f"guara/project/{project_id}/v{version}".encode()
    except UnicodeEncodeError:
        raise InvalidSecretInput("project id is not valid Unicode text") from None


def derive_project_key(master_key: bytes, *, project_id: str, version: int) -> bytes:
    """The 32-byte AES key of ``project_id`` under the master key of ``version``."""
    kdf = HKDF(
        algorithm=hashes.SHA256(),
        length=PROJECT_KEY_BYTES,
        salt=HKDF_SALT,
        info=project_key_info(project_id, version),
    )
    return kdf.derive(master_key)


class ProjectKeys:
    """Derives per-project AES-GCM keys on first use and keeps them for its own lifetime.

    Make one per request, page or rotation batch: a page of 1,000 services across 10 projects derives
    10 keys, not 1,000. Unknown versions raise MasterKeyError; its repr shows counts only.
    """

    __slots__ = ("_aeads", "_derivations", "_keyring")

    def __init__(self, keyring: MasterKeyring) -> None:
        self._keyring = keyring
        self._aeads: dict[tuple[str, int], AESGCM] = {}
        self._derivations = 0

    @property
    def keyring(self) -> MasterKeyring:
        return self._keyring

    @property
    def derivation_count(self) -> int:
        """How many HKDF derivations this object has run (each (project, version) once)."""
        return self._derivations

    def aead(self, project_id: str, version: int) -> AESGCM:
        """The AES-256-GCM cipher of ``project_id`` at master-key ``version``."""
        cache_key = (project_id, version)
        cipher = self._aeads.get(cache_key)
        if cipher is None:
            master_key = self._keyring.master_key(version)
            cipher = AESGCM(derive_project_key(master_key, project_id=project_id, version=version))
            self._aeads[cache_key] = cipher
            self._derivations += 1
        return cipher

    def __repr__(self) -> str:
        return f"ProjectKeys(versions={list(self._keyring.versions)}, derived={self._derivations})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("ProjectKeys holds key material and cannot be pickled or copied")
