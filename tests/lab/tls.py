"""TLS material of the lab: one CA per session, server certificates issued by it, SSL contexts."""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import trustme

# Every lab server answers on loopback under these names (IPv4, name, IPv6).
LAB_CERT_NAMES: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")


def lab_server_cert(ca: trustme.CA, names: Sequence[str] = LAB_CERT_NAMES) -> trustme.LeafCert:
    """A server certificate for `names` (host names or IP literals) signed by the lab CA."""
    if not names:
        raise ValueError("a server certificate needs at least one name")
    return ca.issue_cert(*names)


def server_ssl_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server-side context presenting `cert` (with its chain)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """A client-side context that trusts only the lab CA (hostname checks stay on)."""
    # PROTOCOL_TLS_CLIENT verifies certificates and host names, and starts without the system roots.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    return context
