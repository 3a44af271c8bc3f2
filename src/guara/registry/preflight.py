"""Test Connection: a real preflight against a registry, under one wall-clock deadline.

``GET /v2/`` → (Basic re-check | Bearer token exchange) → ``HEAD`` the manifest. Every failure ends
as exactly one of six codes, decided in one place: ``failure_mapping``. The table it implements
(DESIGN §1 made concrete):

==========================================================  ====================
failure                                                     code
==========================================================  ====================
a cloud key (ECR, Google) rejected, a role not assumable    auth_failed
a cloud token endpoint unreachable or failing (5xx, junk)   network_error
malformed image reference or registry; registry not the     invalid_url
image's; plain http not allowed; connection refused or
unreachable (registry host); /v2/ neither 200 nor 401
credentials rejected: token server 401/403, Basic re-check  auth_failed
401/403, manifest 403, 401 ``invalid_token``; credentials
needed but none given (incl. anonymous 401 on the manifest);
a user name or password HTTP Basic cannot carry
manifest 404 / MANIFEST_UNKNOWN / NAME_UNKNOWN; 401 after   manifest_not_found
the credentials were accepted ("missing, or these
credentials cannot read it")
the deadline passed (one budget for all requests)           timeout
the guard refused an address (registry, realm, redirect)    ssrf_blocked
DNS failure, TLS failure, reset, malformed or oversized     network_error
answers, redirect loops, plain-http realm or redirect,
a realm or redirect on an invalid host or port,
429 rate limiting, 5xx, connect failure to a host other
than the registry, an unreadable CA file (TrustStoreError)
==========================================================  ====================
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import SecretStr

from guara.netguard import Resolver

from .auth import Credentials
from .cloud import AwsEcrKey, CloudKey, cloud_login
from .deadline import Deadline
from .errors import (
    AccessDenied,
    AuthenticationFailed,
    CloudLoginFailed,
    CloudLoginRejected,
    ConnectFailed,
    ConnectionBroken,
    DeadlineExceeded,
    DestinationRefused,
    InsecureURLRefused,
    InvalidCloudKey,
    InvalidCredentials,
    InvalidReference,
    InvalidRegistry,
    ManifestNotFound,
    NameResolutionFailed,
    NotARegistry,
    ProtocolViolation,
    RegistryClientError,
    RegistryError,
    TLSFailed,
    TooManyRequests,
    TrustStoreError,
    UnsupportedChallenge,
)
from .options import DEFAULT_TIMEOUT_S, RegistryOptions
from .reference import ImageReference, RegistryLocation, parse_image_reference, parse_registry, same_registry
from .session import ManifestDescriptor, RegistrySession

logger = logging.getLogger("guara.registry.preflight")

T = TypeVar("T")


class PreflightCode(enum.StrEnum):
    """The six failure codes of Test Connection."""

    INVALID_URL = "invalid_url"
    AUTH_FAILED = "auth_failed"
    MANIFEST_NOT_FOUND = "manifest_not_found"
    TIMEOUT = "timeout"
    SSRF_BLOCKED = "ssrf_blocked"
    NETWORK_ERROR = "network_error"


@dataclass(frozen=True, slots=True)
class PreflightResult:
    """The outcome. ``code`` is None and ``digest`` set exactly when ``ok``; ``message`` is for people
    and never holds a secret."""

    ok: bool
    code: PreflightCode | None
    message: str
    digest: str | None
    elapsed_ms: int

    def as_dict(self) -> dict[str, object]:
        """The JSON shape of the API and ``guara preflight --json``."""
        return {
            "ok": self.ok,
            "code": None if self.code is None else self.code.value,
            "message": self.message,
            "digest": self.digest,
            "elapsed_ms": self.elapsed_ms,
        }


async def preflight(
    image: str,
    *,
    registry: str | None = None,
    username: str | None = None,
    password: str | SecretStr | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    ssrf_allow: str | Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT_S,  # noqa: ASYNC109 - the public API (DESIGN §3); one Deadline
    allow_http: bool = False,
    resolver: Resolver | None = None,
    options: RegistryOptions | None = None,
    cloud_key: CloudKey | None = None,
) -> PreflightResult:
    """Run Test Connection for ``image`` with these credentials; never raises for a failed preflight.

    ``registry`` (the Registry URL field) may be None (taken from the image), ``host``,
    ``host:port`` or an ``https://`` URL, and must name the image's registry. How to connect is
    ``options`` when given (what the application passes); otherwise it is built from ``ca_file``,
    ``ssrf_allow`` (the operator's exempted CIDRs: a malformed one raises ValueError, that is
    configuration, not a preflight outcome), ``timeout`` (bounds the whole preflight, every request
    included), ``allow_http`` and ``resolver``. ``cloud_key`` (instead of a username and password) is
    exchanged for a short-lived login first, under the same deadline.
    """
    if options is None:
        options = RegistryOptions.build(
            ca_file=ca_file, ssrf_allow=ssrf_allow, timeout=timeout, allow_http=allow_http, resolver=resolver
        )
    operation = await run_operation(
        image,
        RegistrySession.head_manifest,
        registry=registry,
        username=username,
        password=password,
        options=options,
        cloud_key=cloud_key,
    )
    context, descriptor, elapsed_ms = operation.context, operation.value, operation.elapsed_ms
    if descriptor is None:
        assert context.code is not None
        result = PreflightResult(False, context.code, context.message, None, elapsed_ms)
    else:
        message = _success_message(context, descriptor)
        result = PreflightResult(True, None, message, descriptor.digest, elapsed_ms)
    logger.info(
        "preflight registry=%s repository=%s ok=%s code=%s elapsed_ms=%d",
        context.location.host if context.location else "-",
        context.image.repository if context.image else "-",
        result.ok,
        result.code or "-",
        elapsed_ms,
    )
    return result


@dataclass(frozen=True)
class Operation(Generic[T]):
    """The end of ``run_operation``: ``value`` when the work finished, else the failure in ``context``."""

    context: FailureContext
    value: T | None
    elapsed_ms: int


async def run_operation(
    image: str,
    work: Callable[[RegistrySession], Awaitable[T]],
    *,
    options: RegistryOptions,
    registry: str | None = None,
    username: str | None = None,
    password: str | SecretStr | None = None,
    cloud_key: CloudKey | None = None,
) -> Operation[T]:
    """Open a guarded, authenticated ``RegistrySession`` for ``image`` and run ``work`` in it, all under
    one deadline (``options.timeout``). Registry failures (of the set-up and of ``work``) are mapped by
    ``failure_mapping`` into the returned context; other exceptions of ``work`` propagate. Preflight
    and deploy share it. A ``cloud_key`` is exchanged first, inside the deadline; the login it gave is
    ``context.exchanged`` (for a runtime's pull of this one deploy).
    """
    deadline = Deadline(options.timeout)
    secret = password if isinstance(password, SecretStr) or password is None else SecretStr(password)
    context = FailureContext(timeout=options.timeout)
    value: T | None = None
    with failure_mapping(context):
        context.image = image_ref = parse_image_reference(image)
        location = _registry_location(image_ref, registry, allow_http=options.allow_http)
        context.location = location
        credentials = Credentials.of(username, secret) if cloud_key is None else None
        context.credentials_given = credentials is not None or cloud_key is not None
        ssl_context = options.ssl_context()
        with deadline.scope():
            if cloud_key is not None:
                context.cloud_provider = "AWS" if isinstance(cloud_key, AwsEcrKey) else "Google"
                credentials = await cloud_login(
                    cloud_key, registry_host=location.host, options=options, deadline=deadline
                )
                context.exchanged, context.cloud_provider = credentials, None
            async with RegistrySession(
                image_ref,
                registry=location,
                credentials=credentials,
                ssl_context=ssl_context,
                policy=options.guard_policy(),
                deadline=deadline,
                allow_http=options.allow_http,
            ) as session:
                context.session = session
                value = await work(session)
    return Operation(context, value, int(deadline.elapsed() * 1000))


def _registry_location(image: ImageReference, registry: str | None, *, allow_http: bool) -> RegistryLocation:
    if registry is None or not registry.strip():
        return image.location
    location = parse_registry(registry.strip(), allow_http=allow_http)
    if not same_registry(location, image):
        raise InvalidRegistry(
            f"the registry URL names {location.host}, but the image {image} is on {image.registry}: "
            f"make them match (e.g. image {location.host}/{image.repository})"
        )
    return location


@dataclass
class FailureContext:
    """What the operation knew when it failed; the messages are built from it. Fill ``image``,
    ``location``, ``credentials_given`` and ``session`` as they become known, inside
    ``failure_mapping``; afterwards ``code`` and ``message`` hold the outcome (None/"" on success).
    Public so deploy's image resolution maps failures exactly like Test Connection."""

    timeout: float
    image: ImageReference | None = None
    location: RegistryLocation | None = None
    credentials_given: bool = False
    session: RegistrySession | None = None
    # Set while a cloud key is being exchanged ("AWS", "Google"); the login it gave, once it did.
    cloud_provider: str | None = None
    exchanged: Credentials | None = field(default=None, repr=False)
    code: PreflightCode | None = None
    message: str = field(default="")

    @property
    def registry_host(self) -> str:
        return self.location.api_host if self.location else ""

    def fail(self, code: PreflightCode, message: str) -> None:
        self.code = code
        self.message = message


@contextlib.contextmanager
def failure_mapping(context: FailureContext) -> Iterator[None]:
    """The one place where a registry failure becomes a code and a message (see the module table).

    ``with failure_mapping(context): ...`` swallows every ``RegistryClientError`` raised inside and
    records its code and message in ``context``; any other exception propagates (a bug)."""
    try:
        yield
    except RegistryClientError as exc:
        context.fail(*_classify(exc, context))


def _classify(exc: RegistryClientError, context: FailureContext) -> tuple[PreflightCode, str]:
    code = PreflightCode
    detail = str(exc)
    if isinstance(exc, InvalidReference):
        return code.INVALID_URL, f"the image reference is invalid: {detail}"
    if isinstance(exc, InvalidRegistry):
        return code.INVALID_URL, f"the registry URL is invalid: {detail}"
    if isinstance(exc, InvalidCloudKey):
        return code.AUTH_FAILED, f"{detail}; check the {exc.field}"
    if isinstance(exc, CloudLoginRejected):
        return code.AUTH_FAILED, detail
    if isinstance(exc, CloudLoginFailed):
        return code.NETWORK_ERROR, detail
    if context.cloud_provider is not None:
        return _classify_cloud_login(exc, context, context.cloud_provider)
    if isinstance(exc, InvalidCredentials):
        return code.AUTH_FAILED, f"{detail}; check the {exc.field}"
    if isinstance(exc, TrustStoreError):
        return code.NETWORK_ERROR, f"{detail}; the operator's CA file (GUARA_EXTRA_CA_FILE) needs fixing"
    if isinstance(exc, DestinationRefused):
        if exc.blocked:
            return code.SSRF_BLOCKED, (
                f"blocked by the network guard: {detail}. Registries must be on publicly routable addresses"
            )
        return code.INVALID_URL, f"refused URL: {detail}"
    if isinstance(exc, DeadlineExceeded):
        return code.TIMEOUT, (
            f"the registry did not finish answering within {context.timeout:g} s "
            "(slow, overloaded, or not reachable from here); try again later"
        )
    if isinstance(exc, ConnectFailed):
        if exc.host == context.registry_host or not exc.host:
            return code.INVALID_URL, (
                f"nothing answers at {exc.host or context.registry_host} (connection refused or "
                "unreachable): check the registry host and port"
            )
        return code.NETWORK_ERROR, f"{detail} (the registry sent us there)"
    if isinstance(exc, NotARegistry):
        return code.INVALID_URL, f"{detail}: check the registry URL"
    if isinstance(exc, NameResolutionFailed):
        return code.NETWORK_ERROR, f"{detail}: check the host name"
    if isinstance(exc, TLSFailed | ConnectionBroken | InsecureURLRefused | UnsupportedChallenge):
        return code.NETWORK_ERROR, detail
    if isinstance(exc, ProtocolViolation):
        return code.NETWORK_ERROR, f"unusable answer: {detail}"
    if isinstance(exc, AuthenticationFailed):
        if context.credentials_given:
            detail += "; check the username and the password or access token"
        return code.AUTH_FAILED, detail
    if isinstance(exc, ManifestNotFound):
        return code.MANIFEST_NOT_FOUND, detail
    if isinstance(exc, AccessDenied):
        if exc.insufficient_scope and exc.credentials_given and _credentials_accepted(context):
            return code.MANIFEST_NOT_FOUND, detail
        return code.AUTH_FAILED, detail
    if isinstance(exc, TooManyRequests):
        return code.NETWORK_ERROR, f"{detail}; no retry fits in the preflight's budget"
    if isinstance(exc, RegistryError):
        return code.NETWORK_ERROR, f"{detail}; the registry may be down, try again later"
    return code.NETWORK_ERROR, detail


def _classify_cloud_login(
    exc: RegistryClientError, context: FailureContext, provider: str
) -> tuple[PreflightCode, str]:
    """A failure while a cloud key was exchanged: the endpoint is the provider's, not the registry."""
    code = PreflightCode
    detail = str(exc)
    if isinstance(exc, DestinationRefused) and exc.blocked:
        return code.SSRF_BLOCKED, (
            f"blocked by the network guard: {detail}. {provider}'s token endpoint must be on a publicly "
            "routable address"
        )
    if isinstance(exc, DeadlineExceeded):
        return code.TIMEOUT, (
            f"{provider}'s token endpoint did not answer within {context.timeout:g} s; try again later"
        )
    if isinstance(exc, ConnectFailed):
        return code.NETWORK_ERROR, f"{provider}'s token endpoint is unreachable: {detail}"
    return code.NETWORK_ERROR, f"logging in to {provider} failed: {detail}"


def _credentials_accepted(context: FailureContext) -> bool:
    return context.session is not None and context.session.credentials_accepted


def _success_message(context: FailureContext, descriptor: ManifestDescriptor) -> str:
    assert context.image is not None
    assert context.session is not None
    image = context.image
    session = context.session
    short = descriptor.digest[:19] + "…"
    shown = f"{image.registry}/{image.repository}" + (
        f":{image.tag}" if image.digest is None else f"@{short}"
    )
    if session.auth_scheme == "anonymous":
        how = "anonymous pulls allowed"
        if context.credentials_given:
            how += "; the credentials were not needed"
    elif session.credentials_accepted:
        how = "credentials accepted"
    else:
        how = "anonymous token accepted"
    return f"found {shown} ({short}); {how}" if image.digest is None else f"found {shown}; {how}"
