"""Master keys: parsing, the key file's safety rules, creation and appending versions."""

from __future__ import annotations

import base64
import copy
import os
import pickle
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from pydantic import SecretStr

from guara.secrets import MasterKeyError, MasterKeyring, append_key_version, ensure_key_file, load_keyring

T = TypeVar("T")

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
KEY_A_B64 = base64.b64encode(KEY_A).decode()
KEY_B_B64 = base64.b64encode(KEY_B).decode()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_key_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def run_together(count: int, action: Callable[[], T]) -> list[T]:
    """Run ``action`` in ``count`` threads released at the same moment."""
    barrier = threading.Barrier(count)

    def start() -> T:
        barrier.wait()
        return action()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: start(), range(count)))


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    yield
    os.umask(previous)


# --- GUARA_MASTER_KEY --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        KEY_A_B64,
        KEY_A_B64.rstrip("="),
        base64.urlsafe_b64encode(KEY_A).decode().rstrip("="),
        f"  {KEY_A_B64}\n",
        f"v1:{KEY_A_B64}",
    ],
)
def test_environment_key_is_version_1(text: str) -> None:
    keyring = load_keyring(key_b64=text, key_file=None)
    assert keyring.versions == (1,)
    assert keyring.current_version == 1
    assert keyring.master_key(1) == KEY_A


def test_environment_key_accepts_secret_str() -> None:
    assert load_keyring(key_b64=SecretStr(KEY_A_B64), key_file=None).master_key(1) == KEY_A


def test_environment_may_hold_several_versions() -> None:
    keyring = load_keyring(key_b64=f"v1:{KEY_A_B64}, v3:{KEY_B_B64}", key_file=None)
    assert keyring.versions == (1, 3)
    assert keyring.current_version == 3
    assert keyring.master_key(3) == KEY_B


def test_environment_key_wins_over_key_file(tmp_path: Path) -> None:
    key_file = write_key_file(tmp_path / "master.key", f"v1:{KEY_B_B64}\n")
    assert load_keyring(key_b64=KEY_A_B64, key_file=key_file).master_key(1) == KEY_A


def test_environment_key_wins_even_over_an_unsafe_key_file(tmp_path: Path) -> None:
    key_file = write_key_file(tmp_path / "master.key", "garbage", mode=0o666)
    assert load_keyring(key_b64=KEY_A_B64, key_file=key_file).master_key(1) == KEY_A


def test_no_key_at_all_names_both_settings() -> None:
    with pytest.raises(MasterKeyError, match="GUARA_MASTER_KEY or GUARA_MASTER_KEY_FILE"):
        load_keyring(key_b64=None, key_file=None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "set but empty"),
        (" , ", "set but empty"),
        ("*not-base64*", "not base64"),
        ("Zm9vYmFy*", "not base64"),
        (base64.b64encode(os.urandom(16)).decode(), "decodes to 16 bytes"),
        (base64.b64encode(os.urandom(33)).decode(), "decodes to 33 bytes"),
        (KEY_A_B64[:41], "not valid base64"),  # 41 characters cannot be whole bytes
        (base64.b64encode(bytes(32)).decode(), "does not look random"),
        (base64.b64encode(b"a" * 32).decode(), "does not look random"),
        (f"v0:{KEY_A_B64}", "not base64"),
        (f"v1:{KEY_A_B64},v1:{KEY_B_B64}", "must be higher"),
        (f"v2:{KEY_A_B64},v1:{KEY_B_B64}", "must be higher"),
        (f"v1:{KEY_A_B64},{KEY_B_B64}", "only the first entry may omit"),
    ],
)
def test_malformed_environment_key_is_a_clear_error_without_the_key(text: str, expected: str) -> None:
    with pytest.raises(MasterKeyError, match=expected) as caught:
        load_keyring(key_b64=text, key_file=None)
    message = str(caught.value)
    assert "GUARA_MASTER_KEY" in message
    for fragment in (KEY_A_B64[:12], KEY_B_B64[:12], text.strip()[4:16]):
        if len(fragment) >= 8:
            assert fragment not in message


# --- key file ----------------------------------------------------------------------------------------


def test_key_file_with_versions_and_comments(tmp_path: Path) -> None:
    text = f"# comment\n\nv2:{KEY_A_B64}\n  v5:{KEY_B_B64}  \n"
    keyring = load_keyring(key_b64=None, key_file=write_key_file(tmp_path / "k", text))
    assert keyring.versions == (2, 5)
    assert keyring.current_version == 5
    assert keyring.master_key(2) == KEY_A


def test_key_file_written_by_openssl_is_version_1(tmp_path: Path) -> None:
    keyring = load_keyring(key_b64=None, key_file=write_key_file(tmp_path / "k", KEY_A_B64 + "\n"))
    assert keyring.versions == (1,)
    assert keyring.master_key(1) == KEY_A


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o700 | 0o040])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    key_file = write_key_file(tmp_path / "master.key", f"v1:{KEY_A_B64}\n", mode=mode)
    with pytest.raises(MasterKeyError, match=f"mode {mode:04o}.*chmod 600") as caught:
        load_keyring(key_b64=None, key_file=key_file)
    assert str(key_file) in str(caught.value)
    assert KEY_A_B64[:12] not in str(caught.value)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_key_file_private_to_its_owner_is_accepted(tmp_path: Path, mode: int) -> None:
    key_file = write_key_file(tmp_path / "master.key", f"v1:{KEY_A_B64}\n", mode=mode)
    assert load_keyring(key_b64=None, key_file=key_file).master_key(1) == KEY_A


def test_key_file_through_a_symlink_is_read(tmp_path: Path) -> None:
    target = write_key_file(tmp_path / "real.key", f"v1:{KEY_A_B64}\n")
    link = tmp_path / "master.key"
    link.symlink_to(target)
    assert load_keyring(key_b64=None, key_file=link).master_key(1) == KEY_A


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: None, "cannot read master key file .*No such file"),
        (lambda p: p.mkdir(), "is not a regular file"),
        (lambda p: os.mkfifo(p, 0o600), "is not a regular file"),
        (lambda p: write_key_file(p, ""), "holds no key"),
        (lambda p: write_key_file(p, "# only a comment\n\n"), "holds no key"),
        (lambda p: write_key_file(p, "v1:" + "é" * 10 + "\n"), "not ASCII text"),
        (lambda p: write_key_file(p, f"v1:{KEY_A_B64}\nv2:{KEY_B_B64[:20]}\n"), r"line 2: .*decodes to"),
        (lambda p: write_key_file(p, f"v1:{KEY_A_B64}\nv2 {KEY_B_B64}\n"), r"line 2: expected 'v<N>"),
        (
            lambda p: write_key_file(p, f"v3:{KEY_A_B64}\nv2:{KEY_B_B64}\n"),
            r"line 2: version 2 must be higher",
        ),
        (lambda p: write_key_file(p, "x" * (65 * 1024)), "larger than"),
    ],
)
def test_unusable_key_file_is_a_clear_error_without_the_key(
    tmp_path: Path, make: Callable[[Path], object], expected: str
) -> None:
    key_file = tmp_path / "master.key"
    make(key_file)
    with pytest.raises(MasterKeyError, match=expected) as caught:
        load_keyring(key_b64=None, key_file=key_file)
    assert str(key_file) in str(caught.value)
    assert KEY_B_B64[:12] not in str(caught.value)


# --- MasterKeyring -----------------------------------------------------------------------------------


def test_keyring_repr_and_str_show_versions_only() -> None:
    keyring = MasterKeyring({1: KEY_A, 2: KEY_B})
    for text in (repr(keyring), str(keyring), f"{keyring}", repr([keyring])):
        assert text == "MasterKeyring(versions=[1, 2], current_version=2)" or "versions=[1, 2]" in text
        for key in (KEY_A, KEY_B):
            assert base64.b64encode(key).decode()[:12] not in text
            assert key.hex()[:16] not in text
            assert repr(key)[:20] not in text


def test_keyring_is_immutable_and_cannot_be_pickled_or_copied() -> None:
    keyring = MasterKeyring({1: KEY_A})
    with pytest.raises(AttributeError):
        keyring._keys = {}
    with pytest.raises(AttributeError):
        keyring.anything = 1
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(keyring)
    with pytest.raises(TypeError, match="cannot be pickled"):
        copy.copy(keyring)
    assert not hasattr(keyring, "__dict__")


def test_keyring_versions_are_ordered_and_checked() -> None:
    keyring = MasterKeyring({3: KEY_B, 1: KEY_A})
    assert keyring.versions == (1, 3)
    assert 3 in keyring
    assert 2 not in keyring
    with pytest.raises(MasterKeyError, match="no master key version 2 .*v1, v3"):
        keyring.master_key(2)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({}, "at least one"),
        ({0: KEY_A}, "integers from 1"),
        ({True: KEY_A}, "integers from 1"),
        ({1: KEY_A[:31]}, "not exactly 32 bytes"),
        ({1: bytes(32)}, "does not look random"),
    ],
)
def test_keyring_refuses_bad_material(keys: dict[int, bytes], expected: str) -> None:
    with pytest.raises(MasterKeyError, match=expected):
        MasterKeyring(keys)


# --- ensure_key_file ---------------------------------------------------------------------------------


def test_ensure_key_file_creates_a_private_file_and_directories(tmp_path: Path, open_umask: None) -> None:
    key_file = tmp_path / "data" / "guara" / "master.key"
    keyring, created = ensure_key_file(key_file)
    assert created is True
    assert keyring.versions == (1,)
    assert mode_of(key_file) == 0o600
    assert mode_of(tmp_path / "data") == 0o700
    assert mode_of(tmp_path / "data" / "guara") == 0o700
    assert load_keyring(key_b64=None, key_file=key_file).master_key(1) == keyring.master_key(1)
    assert [p.name for p in key_file.parent.iterdir()] == ["master.key"]  # no temporary file left


def test_ensure_key_file_loads_an_existing_file(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    first, created_first = ensure_key_file(key_file)
    second, created_second = ensure_key_file(key_file)
    assert (created_first, created_second) == (True, False)
    assert second.master_key(1) == first.master_key(1)


def test_ensure_key_file_leaves_existing_directories_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    ensure_key_file(data_dir / "master.key")
    assert mode_of(data_dir) == 0o755
    assert mode_of(data_dir / "master.key") == 0o600


def test_ensure_key_file_never_overwrites_an_unsafe_file(tmp_path: Path) -> None:
    key_file = write_key_file(tmp_path / "master.key", f"v1:{KEY_A_B64}\n", mode=0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        ensure_key_file(key_file)
    assert key_file.read_text() == f"v1:{KEY_A_B64}\n"
    assert mode_of(key_file) == 0o644


def test_concurrent_ensure_key_file_creates_one_key(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "master.key"
    results = run_together(8, lambda: ensure_key_file(key_file))
    assert sum(created for _, created in results) == 1
    assert len({keyring.master_key(1) for keyring, _ in results}) == 1


# --- append_key_version ------------------------------------------------------------------------------


def test_append_key_version_keeps_old_keys_and_the_file_private(tmp_path: Path, open_umask: None) -> None:
    key_file = tmp_path / "master.key"
    original, _ = ensure_key_file(key_file)
    before = key_file.read_text()
    assert append_key_version(key_file) == 2
    assert append_key_version(key_file) == 3
    after = key_file.read_text()
    assert after.startswith(before)
    assert mode_of(key_file) == 0o600
    keyring = load_keyring(key_b64=None, key_file=key_file)
    assert keyring.versions == (1, 2, 3)
    assert keyring.current_version == 3
    assert keyring.master_key(1) == original.master_key(1)
    assert len({keyring.master_key(v) for v in keyring.versions}) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".master.key.lock", "master.key"]


def test_append_key_version_after_a_line_without_newline(tmp_path: Path) -> None:
    key_file = write_key_file(tmp_path / "master.key", KEY_A_B64)
    assert append_key_version(key_file) == 2
    keyring = load_keyring(key_b64=None, key_file=key_file)
    assert keyring.versions == (1, 2)
    assert keyring.master_key(1) == KEY_A


def test_append_key_version_follows_a_symlink(tmp_path: Path) -> None:
    target = write_key_file(tmp_path / "real.key", f"v1:{KEY_A_B64}\n")
    link = tmp_path / "master.key"
    link.symlink_to(target)
    assert append_key_version(link) == 2
    assert link.is_symlink()
    assert load_keyring(key_b64=None, key_file=target).versions == (1, 2)


def test_concurrent_appends_never_share_a_version(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    ensure_key_file(key_file)
    versions = run_together(8, lambda: append_key_version(key_file))
    assert sorted(versions) == list(range(2, 10))
    assert load_keyring(key_b64=None, key_file=key_file).versions == tuple(range(1, 10))


def test_retiring_a_version_is_deleting_its_line(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    ensure_key_file(key_file)
    append_key_version(key_file)
    lines = key_file.read_text().splitlines(keepends=True)
    key_file.write_text("".join(line for line in lines if not line.startswith("v1:")))
    keyring = load_keyring(key_b64=None, key_file=key_file)
    assert keyring.versions == (2,)
    assert append_key_version(key_file) == 3


def test_append_key_version_refuses_an_unusable_file(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="cannot read"):
        append_key_version(tmp_path / "missing.key")
    unsafe = write_key_file(tmp_path / "master.key", f"v1:{KEY_A_B64}\n", mode=0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        append_key_version(unsafe)
    assert unsafe.read_text() == f"v1:{KEY_A_B64}\n"
