"""TLS trust for registry connections: the system roots plus an optional extra CA file."""

from __future__ import annotations

import functools
import os
import ssl

from .errors import TrustStoreError


def trust_context(ca_file: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A client SSL context trusting the system roots and, when given, the PEM roots in ``ca_file``.

    Contexts are cached per file version (path, size, mtime): building one reads every system root.
    Treat the result as read-only. Raises TrustStoreError when the file cannot be read or holds no
    certificate (the one place file and ssl errors of the trust store are translated).
    """
    if ca_file is None:
        return _cached_context(None, 0, 0)
    path = os.fspath(ca_file)
    try:
        stat = os.stat(path)
        return _cached_context(path, stat.st_size, stat.st_mtime_ns)
    except ssl.SSLError as exc:
        raise TrustStoreError(f"the CA file {path} holds no usable PEM certificate ({exc.reason})") from exc
    except OSError as exc:
        raise TrustStoreError(f"could not read the CA file {path} ({exc.strerror or exc})") from exc


@functools.lru_cache(maxsize=16)
def _cached_context(path: str | None, size: int, mtime_ns: int) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if path is not None:
        context.load_verify_locations(cafile=path)
    return context
