"""HKDF: the primitive against RFC 5869, guara's salt and info pinned, and ProjectKeys caching."""

from __future__ import annotations

import copy
import hashlib
import hmac
import os
import pickle

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from guara.secrets import InvalidSecretInput, MasterKeyError, MasterKeyring, ProjectKeys, open_secret, seal
from guara.secrets.derivation import derive_project_key, project_key_info

# RFC 5869, appendix A, test cases 1-3 (the SHA-256 ones): IKM, salt, info, L, OKM.
RFC5869_SHA256 = [
    (
        "0b" * 22,
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        42,
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    ),
    (
        bytes(range(0x00, 0x50)).hex(),
        bytes(range(0x60, 0xB0)).hex(),
        bytes(range(0xB0, 0x100)).hex(),
        82,
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ),
    (
        "0b" * 22,
        "",
        "",
        42,
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    ),
]

MASTER_KEY = bytes(range(32))


def stdlib_hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with hmac, independent of the library under test."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "okm"), RFC5869_SHA256)
def test_hkdf_primitive_matches_rfc5869(ikm: str, salt: str, info: str, length: int, okm: str) -> None:
    kdf = HKDF(
        algorithm=hashes.SHA256(), length=length, salt=bytes.fromhex(salt) or None, info=bytes.fromhex(info)
    )
    assert kdf.derive(bytes.fromhex(ikm)).hex() == okm
    assert (
        stdlib_hkdf_sha256(bytes.fromhex(ikm), bytes.fromhex(salt), bytes.fromhex(info), length).hex() == okm
    )


@pytest.mark.parametrize(
    ("project_id", "version", "expected"),
    [
        ("proj-1", 1, "f8d1630f125eea7a78902b1f83092eccd471311de094fc57550c9626f976b513"),
        (
            "3f2b7c1e-0d4a-4e8b-9c61-2a5d7e9f1b30",
            7,
            "400f87a40c09d801c665673619e7eef1f8be6d22eaa74d68593992a0fca41555",
        ),
    ],
)
def test_guara_project_key_derivation_is_pinned(project_id: str, version: int, expected: str) -> None:
    # The salt and the info format are part of the stored-data format: changing either makes every
    # stored secret unreadable. This vector pins both.
    salt = b"guara/secrets/hkdf-salt/v1"
    info = f"guara/project/{project_id}/v{version}".encode()
    assert project_key_info(project_id, version) == info
    assert stdlib_hkdf_sha256(MASTER_KEY, salt, info, 32).hex() == expected
    assert derive_project_key(MASTER_KEY, project_id=project_id, version=version).hex() == expected


def test_projects_and_versions_never_share_a_key() -> None:
    derived = {
        derive_project_key(MASTER_KEY, project_id=project, version=version)
        for project in ("p1", "p2", "p1/v1", "P1")
        for version in (1, 2, 10)
    }
    assert len(derived) == 12


def test_empty_project_id_is_refused() -> None:
    with pytest.raises(InvalidSecretInput, match="project id"):
        derive_project_key(MASTER_KEY, project_id="", version=1)


def test_project_keys_derive_once_per_project_and_version() -> None:
    keys = ProjectKeys(MasterKeyring({1: os.urandom(32), 2: os.urandom(32)}))
    envelopes = [
        seal(
            keys, SecretStr(f"pw-{n}"), project_id=f"project-{n % 3}", service_id=f"svc-{n}", field="password"
        )
        for n in range(30)
    ]
    assert keys.derivation_count == 3
    for n, envelope in enumerate(envelopes):
        opened = open_secret(
            keys, envelope, project_id=f"project-{n % 3}", service_id=f"svc-{n}", field="password"
        )
        assert opened.get_secret_value() == f"pw-{n}"
    assert keys.derivation_count == 3
    seal(keys, SecretStr("x"), project_id="project-0", service_id="s", field="password", version=1)
    assert keys.derivation_count == 4
    assert ProjectKeys(keys.keyring).derivation_count == 0  # a fresh object starts empty


def test_project_keys_unknown_version_is_a_master_key_error(keys: ProjectKeys) -> None:
    with pytest.raises(MasterKeyError, match="no master key version 9"):
        keys.aead("p", 9)
    assert keys.derivation_count == 0


def test_project_keys_repr_shows_no_material(keyring: MasterKeyring) -> None:
    keys = ProjectKeys(keyring)
    keys.aead("p", 1)
    text = repr(keys)
    assert text == "ProjectKeys(versions=[1], derived=1)"
    assert keyring.master_key(1).hex()[:16] not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(keys)
    with pytest.raises(TypeError, match="cannot be pickled"):
        copy.deepcopy(keys)
