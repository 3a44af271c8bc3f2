"""Making the engines trust the lab CA: `certs.d/<host:port>/ca.crt` for each lab registry.

Both engines read `certs.d` at every pull, so the files can come and go while the engines run. The
lab's ports are random per session, so every directory written here is this session's own; each is
recorded in a lease (see `tests.lab.leases`) before it is written and removed at the end, or by the
next session's sweep after a killed run. A directory is only removed while its `ca.crt` is still the
one written here (a later session on a reused port may have put its own CA there).

What each engine reads:
- Podman (containers/image) verifies every registry and reads `/etc/containers/certs.d/<host:port>/`,
  or else `/etc/docker/certs.d/<host:port>/` (each alone is enough: `tests/test_engine_lab.py`).
- dockerd reads only `/etc/docker/certs.d/<host:port>/`, and only for registries it treats as secure.
  Every registry on 127.0.0.0/8 is "insecure" for dockerd (a built-in default it always appends), so
  it verifies no lab certificate at all (checked: it pulls from `localhost:PORT`, which no certs.d
  directory covers) and would fall back to plain HTTP. The lab cannot show dockerd verifying: it
  refuses IPv6 literal references (`[::1]:PORT/...`), and a host name would need /etc/hosts or DNS.
  The directories are written for it anyway, as they would be for a real registry.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.lab.leases import LEASE_BASE, LeaseError, claim

CONTAINERS_CERTS_D = Path("/etc/containers/certs.d")
DOCKER_CERTS_D = Path("/etc/docker/certs.d")
CERTS_D_ROOTS: tuple[Path, ...] = (CONTAINERS_CERTS_D, DOCKER_CERTS_D)


def certs_dir_name(host: str) -> str:
    """`127.0.0.1:5000` stays as is; an IPv6 literal needs brackets: `[::1]:5000`."""
    name, _, port = host.rpartition(":")
    if ":" in name and not name.startswith("["):
        return f"[{name}]:{port}"
    return host


@contextlib.contextmanager
def trust_registries(
    hosts: Sequence[str],
    ca_pem: bytes,
    *,
    roots: Sequence[Path] = CERTS_D_ROOTS,
    base: Path = LEASE_BASE,
) -> Iterator[tuple[Path, ...]]:
    """Write `ca_pem` as `ROOT/<host:port>/ca.crt` for every host under every root; yield the dirs."""
    if not ca_pem.startswith(b"-----BEGIN CERTIFICATE-----"):
        raise ValueError("ca_pem must be a PEM certificate")
    directories = tuple(root / certs_dir_name(host) for root in roots for host in hosts)
    digest = hashlib.sha256(ca_pem).hexdigest()
    lease = claim("trust", {"certs": [{"dir": str(d), "sha256": digest} for d in directories]}, base=base)
    try:
        for directory in directories:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "ca.crt").write_bytes(ca_pem)
        yield directories
    finally:
        problems = lease.release().problems
        if problems:
            raise LeaseError("; ".join(problems))
