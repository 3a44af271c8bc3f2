"""Envelopes: the pinned format, round trips, every tamper case, and rotation at library level."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import TypedDict

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from guara.secrets import (
    InvalidSecretInput,
    MasterKeyError,
    MasterKeyring,
    ProjectKeys,
    UnreadableReason,
    UnreadableSecret,
    append_key_version,
    ensure_key_file,
    envelope_key_version,
    load_keyring,
    open_secret,
    reseal,
    seal,
)
from guara.secrets.derivation import derive_project_key
from guara.secrets.envelope import _seal_with_nonce
from tests.secrets.conftest import random_keyring


class Place(TypedDict):
    project_id: str
    service_id: str
    field: str


PLACE = Place(project_id="proj-1", service_id="svc-1", field="password")
FIXED_KEYS = MasterKeyring({1: bytes(range(32)), 7: bytes(range(100, 132))})
# Sealed by guara with the fixed keyring above and nonce 00..0b: the gs1 format, pinned.
FIXED_ENVELOPE = "gs1.1.AAECAwQFBgcICQoL.ZRSoZL4ddbLkUvCglDJCY_LhXSdLkZLTHcQJ8zyBuZjVZyU5uu8onAyuLgw"
FIXED_PLAINTEXT = "correct horse battery staple"
FIXED_ENVELOPE_V7 = "gs1.7.DA0ODxAREhMUFRYX.YwZUbN_KX-hd3X-bRm7zcyc3kp6zKBfLj7k1vCbnYQ"


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def expected_associated_data(key_version: int, project_id: str, service_id: str, field: str) -> bytes:
    """The documented associated data, built by hand."""
    data = b"gs1" + key_version.to_bytes(4, "big")
    for part in (project_id, service_id, field):
        encoded = part.encode()
        data += len(encoded).to_bytes(4, "big") + encoded
    return data


def reason_of(keys: ProjectKeys, envelope: str, place: Place = PLACE) -> UnreadableReason:
    with pytest.raises(UnreadableSecret) as caught:
        open_secret(keys, envelope, **place)
    return caught.value.reason


# --- the format --------------------------------------------------------------------------------------


def test_fixed_envelope_is_reproduced_by_the_nonce_seam() -> None:
    keys = ProjectKeys(FIXED_KEYS)
    envelope = _seal_with_nonce(keys, SecretStr(FIXED_PLAINTEXT), **PLACE, version=1, nonce=bytes(range(12)))
    assert envelope == FIXED_ENVELOPE


def test_fixed_envelope_decodes_with_raw_aes_gcm() -> None:
    tag, version, nonce, sealed = FIXED_ENVELOPE.split(".")
    assert (tag, version) == ("gs1", "1")
    assert unb64url(nonce) == bytes(range(12))
    project_key = derive_project_key(bytes(range(32)), project_id="proj-1", version=1)
    associated = expected_associated_data(1, "proj-1", "svc-1", "password")
    assert (
        AESGCM(project_key).decrypt(unb64url(nonce), unb64url(sealed), associated) == FIXED_PLAINTEXT.encode()
    )
    assert len(unb64url(sealed)) == len(FIXED_PLAINTEXT) + 16  # ciphertext, then the 16-byte tag


@pytest.mark.parametrize(
    ("envelope", "plaintext", "version"),
    [(FIXED_ENVELOPE, FIXED_PLAINTEXT, 1), (FIXED_ENVELOPE_V7, "pässwörd 🔑", 7)],
)
def test_fixed_envelopes_open(envelope: str, plaintext: str, version: int) -> None:
    keys = ProjectKeys(FIXED_KEYS)
    assert open_secret(keys, envelope, **PLACE).get_secret_value() == plaintext
    assert envelope_key_version(envelope) == version


# --- round trips -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext",
    [
        "",
        "a",
        "hunter2",
        "pässwörd-🔑-日本語-\u00a0-\t\n",
        "x" * 16384,
        "".join(chr(0x20 + (n * 7919) % 0x2000) for n in range(16384)),
        '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\n..."}',
    ],
    ids=["empty", "one", "ascii", "non-ascii", "16k-ascii", "16k-unicode", "json-key"],
)
def test_round_trip(keys: ProjectKeys, plaintext: str) -> None:
    envelope = seal(keys, SecretStr(plaintext), **PLACE)
    assert envelope.isascii()
    assert envelope.startswith("gs1.1.")
    opened = open_secret(keys, envelope, **PLACE)
    assert isinstance(opened, SecretStr)
    assert opened.get_secret_value() == plaintext


def test_every_seal_uses_a_fresh_nonce(keys: ProjectKeys) -> None:
    envelopes = {seal(keys, SecretStr("same"), **PLACE) for _ in range(50)}
    assert len(envelopes) == 50
    assert len({envelope.split(".")[2] for envelope in envelopes}) == 50


def test_opened_secret_hides_itself(keys: ProjectKeys) -> None:
    opened = open_secret(keys, seal(keys, SecretStr("hunter2"), **PLACE), **PLACE)
    for text in (repr(opened), str(opened), f"{opened}", repr([opened])):
        assert "hunter2" not in text
        assert "**" in text


def test_envelope_does_not_contain_the_plaintext(keys: ProjectKeys) -> None:
    envelope = seal(keys, SecretStr("hunter2-hunter2-hunter2"), **PLACE)
    assert "hunter2" not in envelope
    assert base64.b64encode(b"hunter2").decode()[:8] not in envelope


# --- tampering ---------------------------------------------------------------------------------------


def test_every_altered_character_fails_to_open() -> None:
    keys = ProjectKeys(FIXED_KEYS)
    survivors = []
    for position, character in enumerate(FIXED_ENVELOPE):
        for mask in (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100):
            altered = FIXED_ENVELOPE[:position] + chr(ord(character) ^ mask) + FIXED_ENVELOPE[position + 1 :]
            try:
                open_secret(keys, altered, **PLACE)
            except UnreadableSecret:
                continue
            survivors.append((position, mask))
    assert survivors == []


def test_every_truncation_and_extension_fails_to_open() -> None:
    keys = ProjectKeys(FIXED_KEYS)
    for length in range(len(FIXED_ENVELOPE)):
        with pytest.raises(UnreadableSecret):
            open_secret(keys, FIXED_ENVELOPE[:length], **PLACE)
    for suffix in ("A", "=", "==", ".", " ", "\n", "\x00"):
        with pytest.raises(UnreadableSecret):
            open_secret(keys, FIXED_ENVELOPE + suffix, **PLACE)
    with pytest.raises(UnreadableSecret):
        open_secret(keys, " " + FIXED_ENVELOPE, **PLACE)


def test_non_canonical_base64_is_malformed() -> None:
    # 28 + 16 = 44 sealed bytes: the last base64 character carries 4 unused bits that decoders ignore.
    last = FIXED_ENVELOPE[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = FIXED_ENVELOPE[:-1] + alphabet[alphabet.index(last) + 1]
    assert unb64url(twin.split(".")[3]) == unb64url(FIXED_ENVELOPE.split(".")[3])
    assert reason_of(ProjectKeys(FIXED_KEYS), twin) is UnreadableReason.MALFORMED


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        (FIXED_ENVELOPE.replace("gs1.", "gs2.", 1), UnreadableReason.UNSUPPORTED_FORMAT),
        (FIXED_ENVELOPE.replace("gs1.", "gs10.", 1), UnreadableReason.UNSUPPORTED_FORMAT),
        (FIXED_ENVELOPE.replace("gs1.", "gs0.", 1), UnreadableReason.UNSUPPORTED_FORMAT),
        (FIXED_ENVELOPE.replace("gs1.", "GS1.", 1), UnreadableReason.MALFORMED),
        (FIXED_ENVELOPE.replace("gs1.", "", 1), UnreadableReason.MALFORMED),
        (FIXED_ENVELOPE.replace("gs1.1.", "gs1.01.", 1), UnreadableReason.MALFORMED),
        (FIXED_ENVELOPE.replace("gs1.1.", "gs1.0.", 1), UnreadableReason.MALFORMED),
        (FIXED_ENVELOPE.replace("gs1.1.", "gs1.-1.", 1), UnreadableReason.MALFORMED),
        (FIXED_ENVELOPE.replace("gs1.1.", "gs1.\u0661.", 1), UnreadableReason.MALFORMED),
        (FIXED_ENVELOPE.replace("gs1.1.", "gs1.2.", 1), UnreadableReason.UNKNOWN_KEY_VERSION),
        (FIXED_ENVELOPE.replace("gs1.1.", "gs1.7.", 1), UnreadableReason.AUTHENTICATION_FAILED),
        (FIXED_ENVELOPE.replace("-", "+").replace("_", "/"), UnreadableReason.MALFORMED),
        ("gs1.1.AAECAwQFBgcICQoL.AAAAAAAAAAAAAAAAAAAA", UnreadableReason.MALFORMED),  # shorter than a tag
        ("", UnreadableReason.MALFORMED),
        ("plaintext-password", UnreadableReason.MALFORMED),
    ],
)
def test_altered_header_says_why(envelope: str, reason: UnreadableReason) -> None:
    assert reason_of(ProjectKeys(FIXED_KEYS), envelope) is reason


def test_envelope_key_version_refuses_malformed_input() -> None:
    with pytest.raises(UnreadableSecret) as caught:
        envelope_key_version("gs1.x.y.z")
    assert caught.value.reason is UnreadableReason.MALFORMED


@pytest.mark.parametrize(
    "place",
    [
        {"project_id": "proj-2", "service_id": "svc-1", "field": "password"},
        {"project_id": "proj-1", "service_id": "svc-2", "field": "password"},
        {"project_id": "proj-1", "service_id": "svc-1", "field": "username"},
        {"project_id": "proj-1", "service_id": "svc-1", "field": "Password"},
        {"project_id": "proj-1", "service_id": "svc-1pass", "field": "word"},  # same bytes, other split
    ],
)
def test_envelope_opens_only_where_it_was_sealed(place: Place) -> None:
    assert reason_of(ProjectKeys(FIXED_KEYS), FIXED_ENVELOPE, place) is UnreadableReason.AUTHENTICATION_FAILED


def test_ciphertext_swapped_between_rows_and_projects_fails(keys: ProjectKeys) -> None:
    rows = [
        ("proj-a", "svc-1", "password"),
        ("proj-a", "svc-2", "password"),
        ("proj-b", "svc-3", "password"),
        ("proj-a", "svc-1", "token"),
    ]
    sealed = {
        row: seal(keys, SecretStr("same secret"), project_id=row[0], service_id=row[1], field=row[2])
        for row in rows
    }
    for source in rows:
        for target in rows:
            place = Place(project_id=target[0], service_id=target[1], field=target[2])
            if source == target:
                assert open_secret(keys, sealed[source], **place).get_secret_value() == "same secret"
            else:
                assert reason_of(keys, sealed[source], place) is UnreadableReason.AUTHENTICATION_FAILED


def test_wrong_master_key_fails_authentication(keys: ProjectKeys) -> None:
    envelope = seal(keys, SecretStr("hunter2"), **PLACE)
    other = ProjectKeys(random_keyring(1))
    assert reason_of(other, envelope) is UnreadableReason.AUTHENTICATION_FAILED


def test_unknown_key_version_says_which(keys: ProjectKeys) -> None:
    envelope = seal(ProjectKeys(random_keyring(1, 4)), SecretStr("hunter2"), **PLACE)
    with pytest.raises(UnreadableSecret) as caught:
        open_secret(keys, envelope, **PLACE)
    assert caught.value.reason is UnreadableReason.UNKNOWN_KEY_VERSION
    assert caught.value.key_version == 4
    assert "key version 4" in str(caught.value)


def test_failures_never_reveal_the_secret(keys: ProjectKeys) -> None:
    envelope = seal(keys, SecretStr("hunter2-canary"), **PLACE)
    for place in (PLACE, Place(project_id="proj-1", service_id="svc-1", field="other")):
        for candidate in (envelope, envelope[:-1] + ("A" if envelope[-1] != "A" else "B")):
            try:
                open_secret(keys, candidate, **place)
            except UnreadableSecret as exc:
                chain = [exc, exc.__cause__, exc.__context__]
                assert all("hunter2" not in repr(e) and "hunter2" not in str(e) for e in chain if e)


# --- sealing input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("place", "named"),
    [
        (Place(project_id="", service_id="s", field="f"), "project id"),
        (Place(project_id="p", service_id="", field="f"), "service id"),
        (Place(project_id="p", service_id="s", field=""), "field"),
    ],
)
def test_empty_place_is_refused(keys: ProjectKeys, place: Place, named: str) -> None:
    with pytest.raises(InvalidSecretInput, match=named):
        seal(keys, SecretStr("x"), **place)
    with pytest.raises(InvalidSecretInput, match=named):
        open_secret(keys, FIXED_ENVELOPE, **place)


def test_plain_str_is_refused(keys: ProjectKeys) -> None:
    with pytest.raises(InvalidSecretInput, match="SecretStr"):
        seal(keys, "hunter2", **PLACE)  # type: ignore[arg-type]


def test_lone_surrogate_is_refused_without_echoing_it(keys: ProjectKeys) -> None:
    with pytest.raises(InvalidSecretInput) as caught:
        seal(keys, SecretStr("hunter2\ud800"), **PLACE)
    assert "hunter2" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


def test_sealing_with_an_unknown_version_is_a_master_key_error(keys: ProjectKeys) -> None:
    with pytest.raises(MasterKeyError, match="no master key version 2"):
        seal(keys, SecretStr("x"), **PLACE, version=2)


def test_sealing_with_an_older_version() -> None:
    keys = ProjectKeys(random_keyring(1, 2))
    envelope = seal(keys, SecretStr("x"), **PLACE, version=1)
    assert envelope_key_version(envelope) == 1
    assert envelope_key_version(seal(keys, SecretStr("x"), **PLACE)) == 2


# --- rotation ----------------------------------------------------------------------------------------


def test_rotation_with_the_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "master.key"
    keyring, _ = ensure_key_file(key_file)
    places = [Place(project_id=f"p{n % 2}", service_id=f"s{n}", field="password") for n in range(6)]
    old = [seal(ProjectKeys(keyring), SecretStr(f"pw{n}"), **place) for n, place in enumerate(places)]
    assert {envelope_key_version(e) for e in old} == {1}

    assert append_key_version(key_file) == 2
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = ProjectKeys(load_keyring(key_b64=None, key_file=key_file))
    assert keys.keyring.current_version == 2
    # Old ciphertexts still open under the new keyring.
    for n, (envelope, place) in enumerate(zip(old, places, strict=True)):
        assert open_secret(keys, envelope, **place).get_secret_value() == f"pw{n}"
    # reseal moves them to the new version.
    new = [reseal(keys, envelope, **place) for envelope, place in zip(old, places, strict=True)]
    assert {envelope_key_version(e) for e in new} == {2}
    for n, (envelope, place) in enumerate(zip(new, places, strict=True)):
        assert open_secret(keys, envelope, **place).get_secret_value() == f"pw{n}"
    # Already current: the same string comes back, so the caller can skip the write.
    assert [reseal(keys, envelope, **place) for envelope, place in zip(new, places, strict=True)] == new

    # Retire version 1: delete its line. Resealed secrets open, forgotten ones say why.
    text = key_file.read_text()
    key_file.write_text(
        "".join(line for line in text.splitlines(keepends=True) if not line.startswith("v1:"))
    )
    retired = ProjectKeys(load_keyring(key_b64=None, key_file=key_file))
    assert open_secret(retired, new[0], **places[0]).get_secret_value() == "pw0"
    assert reason_of(retired, old[0], places[0]) is UnreadableReason.UNKNOWN_KEY_VERSION


def test_reseal_to_an_explicit_version() -> None:
    keys = ProjectKeys(random_keyring(1, 2, 3))
    envelope = seal(keys, SecretStr("pw"), **PLACE, version=3)
    back = reseal(keys, envelope, **PLACE, to_version=1)
    assert envelope_key_version(back) == 1
    assert open_secret(keys, back, **PLACE).get_secret_value() == "pw"


def test_reseal_checks_the_envelope_and_the_target(keys: ProjectKeys) -> None:
    envelope = seal(keys, SecretStr("pw"), **PLACE)
    with pytest.raises(UnreadableSecret):
        reseal(
            keys, envelope, project_id="proj-1", service_id="other", field="password"
        )  # already current, still verified
    damaged = envelope[:-2] + ("AA" if envelope[-2:] != "AA" else "BB")
    with pytest.raises(UnreadableSecret):
        reseal(keys, damaged, **PLACE)
    with pytest.raises(MasterKeyError, match="no master key version 5"):
        reseal(keys, envelope, **PLACE, to_version=5)
