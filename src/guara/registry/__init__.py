"""OCI distribution client: references, challenges, auth flows, manifests, and the preflight.

Pure library: no database, no settings import. Every socket goes through ``guara.netguard``.
The error tree is in ``guara.registry.errors``.
"""

from .auth import AnonymousAuth, BearerTokenAuth, Credentials, Origin, RegistryBasicAuth, Token
from .challenge import Challenge, parse_www_authenticate, parse_www_authenticate_headers
from .deadline import Deadline
from .errors import (
    AccessDenied,
    AuthenticationFailed,
    ConnectFailed,
    ConnectionBroken,
    CredentialsRequired,
    DeadlineExceeded,
    DestinationRefused,
    Diagnostic,
    DigestMismatch,
    InsecureURLRefused,
    InvalidReference,
    InvalidRegistry,
    ManifestNotFound,
    NameResolutionFailed,
    NotARegistry,
    ProtocolViolation,
    RegistryClientError,
    RegistryError,
    ResponseTooLarge,
    TLSFailed,
    TooManyRequests,
    UnsupportedChallenge,
)
from .options import DEFAULT_TIMEOUT_S, RegistryOptions
from .preflight import FailureContext, PreflightCode, PreflightResult, failure_mapping, preflight
from .reference import (
    DOCKER_HUB,
    DOCKER_HUB_API_HOST,
    ImageReference,
    RegistryLocation,
    parse_image_reference,
    parse_registry,
    same_registry,
)
from .responses import MANIFEST_MEDIA_TYPES, compute_digest, is_digest
from .session import MAX_MANIFEST_BYTES, ManifestContent, ManifestDescriptor, RegistrySession
from .trust import trust_context

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DOCKER_HUB",
    "DOCKER_HUB_API_HOST",
    "MANIFEST_MEDIA_TYPES",
    "MAX_MANIFEST_BYTES",
    "AccessDenied",
    "AnonymousAuth",
    "AuthenticationFailed",
    "BearerTokenAuth",
    "Challenge",
    "ConnectFailed",
    "ConnectionBroken",
    "Credentials",
    "CredentialsRequired",
    "Deadline",
    "DeadlineExceeded",
    "DestinationRefused",
    "Diagnostic",
    "DigestMismatch",
    "FailureContext",
    "ImageReference",
    "InsecureURLRefused",
    "InvalidReference",
    "InvalidRegistry",
    "ManifestContent",
    "ManifestDescriptor",
    "ManifestNotFound",
    "NameResolutionFailed",
    "NotARegistry",
    "Origin",
    "PreflightCode",
    "PreflightResult",
    "ProtocolViolation",
    "RegistryBasicAuth",
    "RegistryClientError",
    "RegistryError",
    "RegistryLocation",
    "RegistryOptions",
    "RegistrySession",
    "ResponseTooLarge",
    "TLSFailed",
    "Token",
    "TooManyRequests",
    "UnsupportedChallenge",
    "compute_digest",
    "failure_mapping",
    "is_digest",
    "parse_image_reference",
    "parse_registry",
    "parse_www_authenticate",
    "parse_www_authenticate_headers",
    "preflight",
    "same_registry",
    "trust_context",
]
