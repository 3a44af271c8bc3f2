"""Registry lab: real distribution registries on loopback for integration tests.

Usable from pytest (fixtures in `tests.lab.fixtures`) and from scripts::

    with start_lab(Path(tmp)) as lab:
        lab.token.ref("acme/api:v1")      # "127.0.0.1:PORT/acme/api:v1"
        lab.token.images["acme/api:v1"]   # "sha256:..."

`python -m tests.lab` runs it in the foreground and prints hosts, users and digests.

Container engines serving the Docker Engine API (`tests.lab.engines`), runnable private images
(`tests.lab.apps`) and certs.d trust (`tests.lab.trust`) are imported from their modules:
see docs/engine-lab.md.
"""

from tests.lab.images import MANIFEST_ACCEPT
from tests.lab.issuer import ANYONE, Access, AccessRule, IssuerRequest, TokenIssuer, parse_scope
from tests.lab.lab import (
    ALICE_PASSWORD,
    BASIC_REALM,
    BASIC_USERS,
    TOKEN_ISSUER_NAME,
    TOKEN_SERVICE,
    TOKEN_USERS,
    Lab,
    start_lab,
)
from tests.lab.registry import REGISTRY_BINARY, LabRegistry, LabStartError
from tests.lab.servers import LabServer, start_https_server
from tests.lab.tls import LAB_CERT_NAMES, client_ssl_context, lab_server_cert, server_ssl_context

__all__ = [
    "ALICE_PASSWORD",
    "ANYONE",
    "BASIC_REALM",
    "BASIC_USERS",
    "LAB_CERT_NAMES",
    "MANIFEST_ACCEPT",
    "REGISTRY_BINARY",
    "TOKEN_ISSUER_NAME",
    "TOKEN_SERVICE",
    "TOKEN_USERS",
    "Access",
    "AccessRule",
    "IssuerRequest",
    "Lab",
    "LabRegistry",
    "LabServer",
    "LabStartError",
    "TokenIssuer",
    "client_ssl_context",
    "lab_server_cert",
    "parse_scope",
    "server_ssl_context",
    "start_https_server",
    "start_lab",
]
