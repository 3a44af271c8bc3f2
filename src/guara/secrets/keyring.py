"""Master keys: the versioned keyring, where it comes from, and the key file.

Key file format (ASCII text, append-only)::

    # comment lines and blank lines are ignored
    v1:<base64 of 32 random bytes>
    v2:<base64 of 32 random bytes>

One ``v<N>:<key>`` entry per line, versions strictly increasing from top to bottom (they need not be
contiguous: retiring a version deletes its line). The newest version is the current one: new secrets
are sealed with it. A line holding a bare base64 key, without ``v<N>:``, is accepted only as the first
entry and means version 1, so a file written by ``openssl rand -base64 32 > key`` works as-is.
Keys are standard or URL-safe base64, padding optional, and must decode to exactly 32 bytes.

The file must be a regular file readable by its owner only: a mode with any group or other
permission bit (anything broader than 0600) is refused at start with the ``chmod`` to run, never
just warned about. ``ensure_key_file`` creates it with mode 0600 (new parent directories 0700);
``append_key_version`` adds a new version by writing a temporary file, fsyncing it and renaming it over
the old one, under an exclusive lock, so a reader sees either the old or the new file and two
concurrent rotations cannot both claim the same version.

``GUARA_MASTER_KEY`` (``load_keyring(key_b64=...)``) takes one bare base64 key, which is version 1, or
the same ``v<N>:<key>`` entries separated by commas or whitespace, so an operator who keeps keys in
the environment can still rotate. When given, it wins over any key file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NoReturn

from pydantic import SecretStr

from guara.secrets.errors import MasterKeyError

MASTER_KEY_BYTES = 32
MAX_KEY_VERSION = 999_999_999
# Fewer distinct byte values than this in 32 bytes means a placeholder (all zeros, "aaaa..."), not a
# random key: a random key has about 30, and fewer than 8 happens with negligible probability.
_MIN_DISTINCT_BYTES = 8
_MAX_KEY_FILE_BYTES = 64 * 1024
_ENV_SOURCE = "GUARA_MASTER_KEY"
_HINT = "generate one with `openssl rand -base64 32`"

_VERSIONED_ENTRY = re.compile(r"v([1-9][0-9]{0,8}):(.*)", re.ASCII | re.DOTALL)
_BASE64_KEY = re.compile(r"[A-Za-z0-9+/_-]+={0,2}", re.ASCII)
_ENV_SEPARATORS = re.compile(r"[,\s]+")

_KEY_FILE_HEADER = (
    "# guara master keys: one 'v<N>:<base64 of 32 random bytes>' per line, oldest first.\n"
    "# The last line is the current key. Add versions with `guara keys rotate`; delete a line only\n"
    "# after no stored secret is sealed with that version any more.\n"
)


class MasterKeyring:
    """Immutable map of master-key versions to 32-byte keys. Its repr shows version numbers only."""

    __slots__ = ("_keys",)
    _keys: Mapping[int, bytes]

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        if not keys:
            raise MasterKeyError("the keyring needs at least one master key")
        checked: dict[int, bytes] = {}
        for version, key in keys.items():
            if (
                isinstance(version, bool)
                or not isinstance(version, int)
                or not 1 <= version <= MAX_KEY_VERSION
            ):
                raise MasterKeyError(f"master key versions are integers from 1 to {MAX_KEY_VERSION}")
            if not isinstance(key, bytes) or len(key) != MASTER_KEY_BYTES:
                raise MasterKeyError(f"master key version {version} is not exactly {MASTER_KEY_BYTES} bytes")
            if len(set(key)) < _MIN_DISTINCT_BYTES:
                raise MasterKeyError(f"master key version {version} does not look random; {_HINT}")
            checked[version] = key
        object.__setattr__(self, "_keys", MappingProxyType(dict(sorted(checked.items()))))

    @property
    def versions(self) -> tuple[int, ...]:
        """Every version held, oldest first."""
        return tuple(self._keys)

    @property
    def current_version(self) -> int:
        """The newest version: the one new secrets are sealed with."""
        return max(self._keys)

    def __contains__(self, version: object) -> bool:
        return version in self._keys

    def master_key(self, version: int) -> bytes:
        """The raw key of ``version``; raises MasterKeyError when the keyring lacks it."""
        try:
            return self._keys[version]
        except KeyError:
            held = ", ".join(f"v{v}" for v in self._keys)
            raise MasterKeyError(
                f"the keyring holds no master key version {version} (it holds {held})"
            ) from None

    def __repr__(self) -> str:
        return f"MasterKeyring(versions={list(self._keys)}, current_version={self.current_version})"

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("MasterKeyring is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("MasterKeyring is immutable")

    def __reduce__(self) -> NoReturn:
        # Pickling or copying would put key bytes into caches, queues or files.
        raise TypeError("MasterKeyring holds key material and cannot be pickled or copied")


def load_keyring(*, key_b64: str | SecretStr | None = None, key_file: Path | None = None) -> MasterKeyring:
    """Build the keyring from ``GUARA_MASTER_KEY`` (wins when given) or else from the key file.

    Raises MasterKeyError naming the source and the problem, never the key text.
    """
    if key_b64 is not None:
        text = key_b64.get_secret_value() if isinstance(key_b64, SecretStr) else key_b64
        entries = [token for token in _ENV_SEPARATORS.split(text) if token]
        if not entries:
            raise MasterKeyError(f"{_ENV_SOURCE} is set but empty; {_HINT}")
        return _keyring_from_entries(
            (f"{_ENV_SOURCE} (entry {n})", token) for n, token in enumerate(entries, 1)
        )
    if key_file is not None:
        return _keyring_from_file_text(_read_key_file(key_file), key_file)
    raise MasterKeyError("no master key: set GUARA_MASTER_KEY or GUARA_MASTER_KEY_FILE")


def ensure_key_file(path: Path) -> tuple[MasterKeyring, bool]:
    """Load the key file at ``path``, creating it with a new version 1 when missing.

    Returns the keyring and whether the file was created now. A new file has mode 0600 and any parent
    directory created for it mode 0700. Two processes racing to create it end with the same file.
    """
    if os.path.lexists(path):
        return load_keyring(key_file=path), False
    _make_private_directories(path.parent)
    content = _KEY_FILE_HEADER + f"v1:{_encode_key(_new_master_key())}\n"
    try:
        _write_file_atomically(path, content, replace=False)
    except FileExistsError:
        return load_keyring(key_file=path), False
    return load_keyring(key_file=path), True


def append_key_version(path: Path) -> int:
    """Append a new random master-key version to the key file and return its number.

    The existing lines are kept byte for byte; the file is replaced atomically and stays mode 0600.
    """
    target = Path(os.path.realpath(path))
    with _exclusive_lock(target.with_name(f".{target.name}.lock")):
        text = _read_key_file(target)
        version = _keyring_from_file_text(text, target).current_version + 1
        if version > MAX_KEY_VERSION:
            raise MasterKeyError(f"master key file {path} already holds the highest version")
        separator = "" if not text or text.endswith("\n") else "\n"
        _write_file_atomically(
            target, f"{text}{separator}v{version}:{_encode_key(_new_master_key())}\n", replace=True
        )
    return version


def _keyring_from_file_text(text: str, path: Path) -> MasterKeyring:
    entries: list[tuple[str, str]] = []
    for number, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        if line and not line.startswith("#"):
            entries.append((f"master key file {path}, line {number}", line))
    if not entries:
        raise MasterKeyError(f"master key file {path} holds no key; {_HINT}")
    return _keyring_from_entries(entries)


def _keyring_from_entries(entries: Iterable[tuple[str, str]]) -> MasterKeyring:
    keys: dict[int, bytes] = {}
    for where, entry in entries:
        match = _VERSIONED_ENTRY.fullmatch(entry)
        if match is not None:
            version, key_text = int(match[1]), match[2]
        elif not keys:
            version, key_text = 1, entry
        else:
            raise MasterKeyError(
                f"{where}: expected 'v<N>:<base64 key>' (only the first entry may omit 'v<N>:')"
            )
        if keys and version <= max(keys):
            raise MasterKeyError(f"{where}: version {version} must be higher than every version before it")
        keys[version] = _decode_key(key_text, where)
    return MasterKeyring(keys)


def _decode_key(text: str, where: str) -> bytes:
    if not _BASE64_KEY.fullmatch(text):
        raise MasterKeyError(f"{where}: the key is not base64; {_HINT}")
    standard = text.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error:
        raise MasterKeyError(f"{where}: the key is not valid base64; {_HINT}") from None
    if len(key) != MASTER_KEY_BYTES:
        raise MasterKeyError(
            f"{where}: the key decodes to {len(key)} bytes; a master key is exactly "
            f"{MASTER_KEY_BYTES} bytes; {_HINT}"
        )
    if len(set(key)) < _MIN_DISTINCT_BYTES:
        raise MasterKeyError(f"{where}: the key does not look random; {_HINT}")
    return key


def _encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def _new_master_key() -> bytes:
    return os.urandom(MASTER_KEY_BYTES)


def _read_key_file(path: Path) -> str:
    try:
        # O_NONBLOCK: a FIFO planted at the path must not hang start-up.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise MasterKeyError(f"cannot read master key file {path}: {exc.strerror}") from exc
    try:
        # Checked on the open descriptor, so the file judged is the file read.
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise MasterKeyError(f"master key file {path} is not a regular file")
        if mode & 0o077:
            raise MasterKeyError(
                f"master key file {path} has mode {stat.S_IMODE(mode):04o}; it must be readable by its owner "
                f"only (0600 or 0400): run `chmod 600 {path}`"
            )
        data = b""
        while len(data) <= _MAX_KEY_FILE_BYTES:
            chunk = os.read(fd, _MAX_KEY_FILE_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise MasterKeyError(f"cannot read master key file {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise MasterKeyError(f"master key file {path} is larger than {_MAX_KEY_FILE_BYTES} bytes")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise MasterKeyError(f"master key file {path} is not ASCII text") from None


def _make_private_directories(directory: Path) -> None:
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for new_directory in reversed(missing):
        try:
            new_directory.mkdir(mode=0o700)
        except FileExistsError:
            continue  # created concurrently by someone else: leave its mode alone
        except OSError as exc:
            raise MasterKeyError(f"cannot create directory {new_directory}: {exc.strerror}") from exc
        os.chmod(new_directory, 0o700)  # mkdir's mode is filtered by the umask


def _write_file_atomically(path: Path, content: str, *, replace: bool) -> None:
    """Write a complete 0600 file next to ``path`` and move it into place.

    ``replace=False`` links it in and raises FileExistsError when ``path`` appeared meanwhile.
    """
    directory = path.parent
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise MasterKeyError(f"cannot write master key file {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(content.encode("ascii"))
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
        _fsync_directory(directory)
    except FileExistsError:
        raise
    except OSError as exc:
        raise MasterKeyError(f"cannot write master key file {path}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise MasterKeyError(f"cannot lock master key file ({lock_path}): {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
