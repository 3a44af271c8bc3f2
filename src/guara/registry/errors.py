"""Errors raised by the registry client.

Error tree (catch the root to handle every failure of this package)::

    RegistryClientError             root of every error raised by guara.registry
     ├── InvalidReference           (also ValueError) malformed image reference
     ├── InvalidRegistry            (also ValueError) malformed registry host/URL, or not the image's registry
     ├── InvalidCredentials         (also ValueError) a user name or password HTTP Basic cannot carry (.field)
     ├── InvalidCloudKey            (also ValueError) a cloud key that cannot be used at all (.field)
     ├── CloudLoginFailed           a cloud token exchange (ECR, STS, Google) failed (.provider, .host)
     │    └── CloudLoginRejected    the cloud provider rejected the key or the role
     ├── TrustStoreError            the extra CA file cannot be read or holds no certificate
     ├── DestinationRefused         the network guard refused a destination (.host, .blocked, .reason)
     ├── NameResolutionFailed       a host name did not resolve (.host)
     ├── ConnectFailed              TCP connection refused or host unreachable (.host)
     ├── TLSFailed                  TLS handshake or certificate verification failed (.host)
     ├── ConnectionBroken           connection reset or HTTP framing broken mid-way (.host)
     ├── DeadlineExceeded           (also TimeoutError) the shared deadline passed
     ├── InsecureURLRefused         a plain-http URL where https is required (registry, realm, redirect)
     ├── ProtocolViolation          an answer we cannot use: not JSON, no token, too many redirects...
     │    ├── ResponseTooLarge      a body went over its size cap
     │    └── DigestMismatch        content does not match the digest it was asked or announced for
     ├── NotARegistry               GET /v2/ answered neither 200 nor 401 (.host, .status)
     ├── UnsupportedChallenge       no Basic or Bearer challenge we can answer (or Bearer without realm)
     ├── AuthenticationFailed       credentials rejected (.authority "registry" | "token server", .host)
     │    └── CredentialsRequired   no credentials were given, and the registry wants some
     └── RegistryError              an error status with the registry's own diagnostics
          │                         (.status, .method, .host, .path, .diagnostics)
          ├── ManifestNotFound      404 / MANIFEST_UNKNOWN / NAME_UNKNOWN (.repository, .reference,
          │                         .repository_missing)
          ├── AccessDenied          401 insufficient_scope or 403 DENIED on a manifest or blob
          │                         (.insufficient_scope, .credentials_given)
          └── TooManyRequests       429 (.retry_after seconds or None)

Messages name hosts, repositories, tags and status codes; never a password, a token, an
Authorization header or a URL query string.
"""

from __future__ import annotations

from dataclasses import dataclass


class RegistryClientError(Exception):
    """Root of every error raised by guara.registry."""


class InvalidReference(RegistryClientError, ValueError):
    """The image reference is malformed."""


class InvalidRegistry(RegistryClientError, ValueError):
    """The registry host or URL is malformed, not allowed, or not the image's registry."""


class InvalidCredentials(RegistryClientError, ValueError):
    """The credentials cannot be sent at all (e.g. a ':' in the user name). ``field`` says which:
    ``"username"`` or ``"password"``."""

    def __init__(self, message: str, *, field: str = "username") -> None:
        super().__init__(message)
        self.field = field


class InvalidCloudKey(RegistryClientError, ValueError):
    """A cloud key that cannot be used at all: a mangled JSON key, no region. ``field`` names the input
    (``google_json_key``, ``aws_region``...)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class CloudLoginFailed(RegistryClientError):
    """The exchange of a cloud key for a registry login failed (5xx, an unusable answer).
    ``provider`` is "AWS" or "Google"; ``host`` the endpoint's."""

    def __init__(self, message: str, *, provider: str, host: str) -> None:
        super().__init__(message)
        self.provider = provider
        self.host = host


class CloudLoginRejected(CloudLoginFailed):
    """The cloud provider rejected the key (or refused the role to assume)."""


class TrustStoreError(RegistryClientError):
    """The extra CA file cannot be read, or holds no usable certificate."""


class DestinationRefused(RegistryClientError):
    """The network guard refused to connect. ``blocked`` is True for a non-public address."""

    def __init__(self, message: str, *, host: str, blocked: bool, reason: str) -> None:
        super().__init__(message)
        self.host = host
        self.blocked = blocked
        self.reason = reason


class _HostError(RegistryClientError):
    def __init__(self, message: str, *, host: str) -> None:
        super().__init__(message)
        self.host = host


class NameResolutionFailed(_HostError):
    """A host name did not resolve."""


class ConnectFailed(_HostError):
    """The TCP connection was refused, or the host is unreachable."""


class TLSFailed(_HostError):
    """TLS failed: untrusted or invalid certificate, wrong host name, or not TLS at all."""


class ConnectionBroken(_HostError):
    """The connection broke mid-way (reset, closed early, invalid HTTP)."""


class DeadlineExceeded(RegistryClientError, TimeoutError):
    """The shared deadline of the operation passed."""


class InsecureURLRefused(RegistryClientError):
    """A plain-http URL was refused where https is required."""


class ProtocolViolation(RegistryClientError):
    """An answer that breaks the protocol or cannot be used."""


class ResponseTooLarge(ProtocolViolation):
    """A response body went over its size cap."""


class DigestMismatch(ProtocolViolation):
    """Content does not match the digest it was requested by or announced with."""


class NotARegistry(RegistryClientError):
    """GET /v2/ answered something other than 200 or 401."""

    def __init__(self, message: str, *, host: str, status: int) -> None:
        super().__init__(message)
        self.host = host
        self.status = status


class UnsupportedChallenge(RegistryClientError):
    """The registry asks for an authentication scheme we do not speak, or a malformed one."""


class AuthenticationFailed(RegistryClientError):
    """The credentials were rejected by the registry or by its token server."""

    def __init__(self, message: str, *, authority: str, host: str, status: int | None = None) -> None:
        super().__init__(message)
        self.authority = authority
        self.host = host
        self.status = status


class CredentialsRequired(AuthenticationFailed):
    """No credentials were given, and the registry (or its token server) requires them."""


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One entry of a registry's ``errors`` array (OCI distribution-spec)."""

    code: str
    message: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


class RegistryError(RegistryClientError):
    """An error status from a registry or token server, with its decoded diagnostics.

    ``path`` is the request path without the query string (the query of a token request may name
    the account); ``diagnostics`` come from a body read with a 64 KiB cap.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        method: str,
        host: str,
        path: str,
        diagnostics: tuple[Diagnostic, ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.host = host
        self.path = path
        self.diagnostics = diagnostics

    @property
    def codes(self) -> frozenset[str]:
        """The diagnostic codes, upper-case."""
        return frozenset(d.code.upper() for d in self.diagnostics)


class ManifestNotFound(RegistryError):
    """The manifest (tag or digest) or the whole repository does not exist."""

    def __init__(
        self,
        message: str,
        *,
        repository: str,
        reference: str,
        status: int,
        method: str,
        host: str,
        path: str,
        diagnostics: tuple[Diagnostic, ...] = (),
        repository_missing: bool | None = None,
    ) -> None:
        super().__init__(message, status=status, method=method, host=host, path=path, diagnostics=diagnostics)
        self.repository = repository
        self.reference = reference
        # True: the repository does not exist; False: it does, the tag or digest does not; None: unknown.
        self.repository_missing = repository_missing


class AccessDenied(RegistryError):
    """The registry refused to show a manifest or blob to these credentials (or to anonymous)."""

    def __init__(
        self,
        message: str,
        *,
        insufficient_scope: bool,
        credentials_given: bool,
        status: int,
        method: str,
        host: str,
        path: str,
        diagnostics: tuple[Diagnostic, ...] = (),
    ) -> None:
        super().__init__(message, status=status, method=method, host=host, path=path, diagnostics=diagnostics)
        self.insufficient_scope = insufficient_scope
        self.credentials_given = credentials_given


class TooManyRequests(RegistryError):
    """429 Too Many Requests. ``retry_after`` is the Retry-After delay in seconds, when given."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None,
        status: int,
        method: str,
        host: str,
        path: str,
        diagnostics: tuple[Diagnostic, ...] = (),
    ) -> None:
        super().__init__(message, status=status, method=method, host=host, path=path, diagnostics=diagnostics)
        self.retry_after = retry_after
