"""A registry session for one repository: ping, authenticate once, then manifests and blobs.

Every socket comes from the network guard's transport (wrapped by ``BoundedTransport`` for scheme
policy, body caps and the shared deadline). httpx and guard exceptions are translated in exactly one
place, ``translate_errors``; everything else in this package raises only ``RegistryClientError``s.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import anyio
import httpx
import idna

from guara import __version__
from guara.netguard import (
    DestinationBlocked,
    DisallowedURL,
    GuardPolicy,
    NetGuardError,
    ResolutionFailed,
    guarded_transport,
)

from .auth import AnonymousAuth, BearerTokenAuth, Credentials, Origin, RegistryBasicAuth
from .challenge import Challenge, parse_www_authenticate_headers
from .deadline import Deadline
from .errors import (
    AccessDenied,
    AuthenticationFailed,
    ConnectFailed,
    ConnectionBroken,
    CredentialsRequired,
    DeadlineExceeded,
    DestinationRefused,
    DigestMismatch,
    InsecureURLRefused,
    InvalidRegistry,
    ManifestNotFound,
    NameResolutionFailed,
    NotARegistry,
    ProtocolViolation,
    RegistryClientError,
    RegistryError,
    TLSFailed,
    TooManyRequests,
    UnsupportedChallenge,
)
from .hosts import authority_problem
from .reference import ImageReference, RegistryLocation, same_registry
from .responses import (
    MANIFEST_ACCEPT,
    compute_digest,
    digest_algorithm,
    is_digest,
    media_type_of,
    parse_diagnostics,
    parse_retry_after,
)
from .transport import BODY_LIMIT, DEFAULT_BODY_LIMIT, BoundedTransport

logger = logging.getLogger("guara.registry")

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_REDIRECTS = 5
USER_AGENT = f"guara-registry/{__version__}"
_CLOSE_GRACE_S = 0.25
# A HEAD 404 has no body; a GET for the diagnostics (tag vs repository) gets at most this long.
_DIAGNOSIS_BUDGET_S = 1.0
# How httpx words the error when a redirect's Location is not a URL it can parse.
_BAD_LOCATION = "Invalid URL in location header"


@dataclass(frozen=True, slots=True)
class ManifestDescriptor:
    """What a manifest HEAD tells: digest, media type and size (when the registry says)."""

    digest: str
    media_type: str | None
    size: int | None


@dataclass(frozen=True, slots=True)
class ManifestContent:
    """A manifest as served: the raw bytes (its digest is computed over exactly these)."""

    media_type: str | None
    digest: str
    raw: bytes


class RegistrySession:
    """Talk to one repository of one registry under one deadline.

    ``async with RegistrySession(image, credentials=..., ssl_context=..., policy=..., deadline=...)``
    then ``authenticate()`` (optional: the first call does it), ``head_manifest()``,
    ``get_manifest()``, ``get_blob(digest, max_bytes)``. ``registry`` overrides the image's
    registry location (same registry, e.g. to allow ``http://``); ``oauth2`` makes token exchanges
    POST first (GET fallback). ``unsafe_transport`` replaces the guarded transport, bypassing the
    SSRF guard: for benchmarks only.
    """

    def __init__(
        self,
        image: ImageReference,
        *,
        ssl_context: ssl.SSLContext,
        policy: GuardPolicy,
        deadline: Deadline,
        credentials: Credentials | None = None,
        registry: RegistryLocation | None = None,
        allow_http: bool = False,
        oauth2: bool = False,
        unsafe_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        location = registry if registry is not None else image.location
        if not same_registry(location, image):
            raise ValueError(f"{location} is not the registry of {image}")
        if location.scheme == "http" and not allow_http:
            raise InsecureURLRefused(f"{location} is plain HTTP; only https registries are allowed")
        # A location built by hand skipped the parser: httpx would raise on such a host below.
        problem = authority_problem(location.api_host)
        if problem is not None:
            raise InvalidRegistry(f"invalid registry host: {problem}")
        self.image = image
        self.location = location
        self.deadline = deadline
        self._credentials = credentials
        self._allow_http = allow_http
        self._oauth2 = oauth2
        inner = unsafe_transport or guarded_transport(policy, ssl_context=ssl_context)
        self._client = httpx.AsyncClient(
            base_url=location.base_url,
            transport=BoundedTransport(inner, deadline=deadline, allow_http=allow_http),
            trust_env=False,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            headers={"User-Agent": USER_AGENT},
        )
        self._origin = Origin.of(location.base_url)
        self._auth: httpx.Auth | None = None
        self._basic_accepted = False

    # -- lifecycle --

    async def __aenter__(self) -> RegistrySession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        # Runs even when the deadline cancelled the work: shield it, but never wait long.
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + _CLOSE_GRACE_S
            await self._client.aclose()

    # -- state --

    @property
    def auth_scheme(self) -> str | None:
        """ "anonymous", "basic" or "bearer" once authenticated, else None."""
        if isinstance(self._auth, BearerTokenAuth):
            return "bearer"
        if isinstance(self._auth, RegistryBasicAuth):
            return "basic"
        return None if self._auth is None else "anonymous"

    @property
    def credentials_given(self) -> bool:
        return self._credentials is not None

    @property
    def credentials_accepted(self) -> bool:
        """True once the registry (Basic) or its token server (Bearer) accepted the credentials."""
        if isinstance(self._auth, BearerTokenAuth):
            return self._auth.credentials_accepted
        return self._basic_accepted

    @property
    def token_server_host(self) -> str | None:
        return self._auth.realm_host if isinstance(self._auth, BearerTokenAuth) else None

    # -- operations --

    async def authenticate(self) -> None:
        """Ping ``/v2/`` and set up the flow the registry asks for. Idempotent.

        Basic credentials are checked right away (a second ``GET /v2/``); a Bearer token is fetched
        with the first repository request, so a preflight costs three requests in both modes.
        """
        if self._auth is not None:
            return
        with self._operation():
            await self._authenticate()

    async def head_manifest(self, ref: ImageReference | str | None = None) -> ManifestDescriptor:
        """HEAD the manifest (tag or digest); GET instead on 405 or when the digest header is missing."""
        target = self._target(ref)
        with self._operation():
            await self._authenticate()
            return await self._head_manifest(target)

    async def get_manifest(
        self, ref: ImageReference | str | None = None, *, max_bytes: int = MAX_MANIFEST_BYTES
    ) -> ManifestContent:
        """GET the manifest, capped at ``max_bytes``; its digest is verified."""
        target = self._target(ref)
        with self._operation():
            await self._authenticate()
            return await self._get_manifest(target, max_bytes=max_bytes)

    async def get_blob(self, digest: str, max_bytes: int) -> bytes:
        """GET a blob of the session's repository, at most ``max_bytes``, verified against ``digest``.

        Redirects (to blob storage) are followed through the guard; Authorization is dropped when a
        redirect leaves the registry's origin."""
        if not is_digest(digest):
            raise ValueError("get_blob needs a sha256/sha384/sha512 digest")
        with self._operation():
            await self._authenticate()
            path = f"/v2/{self.image.repository}/blobs/{digest}"
            response = await self._send("GET", path, body_limit=max_bytes)
            if response.status_code != 200:
                raise self._status_error(response, what=f"blob {digest[:19]}…")
            content = response.content
            if compute_digest(content, digest_algorithm(digest)) != digest:
                raise DigestMismatch(f"the blob served for {digest[:19]}… does not match its digest")
            return content

    # -- internals --

    def _target(self, ref: ImageReference | str | None) -> ImageReference:
        if ref is None:
            return self.image
        if isinstance(ref, str):
            return self.image.with_reference(ref)
        if ref.repository != self.image.repository or not same_registry(ref, self.image):
            raise ValueError(f"{ref} is not in this session's repository {self.image.repository}")
        return ref

    @contextlib.contextmanager
    def _operation(self) -> Iterator[None]:
        with translate_errors(), self.deadline.scope():
            yield

    async def _send(
        self,
        method: str,
        path: str,
        *,
        auth: httpx.Auth | None = None,
        headers: dict[str, str] | None = None,
        body_limit: int = DEFAULT_BODY_LIMIT,
    ) -> httpx.Response:
        request = self._client.build_request(
            method, path, headers=headers, extensions={BODY_LIMIT: body_limit}
        )
        use = auth if auth is not None else (self._auth or AnonymousAuth())
        response = await self._client.send(request, auth=use)
        logger.debug("%s %s%s -> %s", method, self.location.api_host, path, response.status_code)
        return response

    async def _authenticate(self) -> None:
        if self._auth is not None:
            return
        ping = await self._send("GET", "/v2/", auth=AnonymousAuth())
        host = self.location.api_host
        if ping.status_code == 200:
            self._auth = AnonymousAuth()
            return
        if ping.status_code == 429:
            raise self._status_error(ping, what="/v2/")
        if ping.status_code != 401:
            raise NotARegistry(
                f"{host} does not answer like a container registry (GET /v2/ answered "
                f"{ping.status_code}, expected 200 or 401)",
                host=host,
                status=ping.status_code,
            )
        try:
            challenges = parse_www_authenticate_headers(ping.headers.get_list("www-authenticate"))
        except ValueError as exc:
            raise ProtocolViolation(f"{host} sent a malformed WWW-Authenticate header") from exc
        challenge = _pick_challenge(challenges, host)
        if challenge.scheme == "bearer":
            self._auth = BearerTokenAuth.from_challenge(
                challenge,
                origin=self._origin,
                scopes=(f"repository:{self.image.repository}:pull",),
                credentials=self._credentials,
                oauth2=self._oauth2,
                allow_http=self._allow_http,
            )
            return
        await self._authenticate_basic(host)

    async def _authenticate_basic(self, host: str) -> None:
        if self._credentials is None:
            raise CredentialsRequired(
                f"the registry at {host} requires a username and password",
                authority="registry",
                host=host,
                status=401,
            )
        basic = RegistryBasicAuth(self._credentials, origin=self._origin)
        check = await self._send("GET", "/v2/", auth=basic)
        if check.status_code in (401, 403):
            raise AuthenticationFailed(
                f"the registry at {host} rejected these credentials ({check.status_code})",
                authority="registry",
                host=host,
                status=check.status_code,
            )
        if check.status_code != 200:
            raise self._status_error(check, what="/v2/")
        self._auth = basic
        self._basic_accepted = True

    async def _head_manifest(self, target: ImageReference) -> ManifestDescriptor:
        path = f"/v2/{target.repository}/manifests/{target.reference}"
        response = await self._send("HEAD", path, headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 405:
            manifest = await self._get_manifest(target, max_bytes=MAX_MANIFEST_BYTES)
            return ManifestDescriptor(manifest.digest, manifest.media_type, len(manifest.raw))
        if response.status_code != 200:
            raise await self._manifest_failure(response, target)
        announced = response.headers.get("Docker-Content-Digest", "").strip()
        if announced and not is_digest(announced):
            raise ProtocolViolation(f"{self.location.api_host} announced a malformed manifest digest")
        if target.digest is not None and announced and announced != target.digest:
            raise DigestMismatch(f"asked for {target.digest}, {self.location.api_host} answered {announced}")
        digest = announced or target.digest
        if digest is None:
            manifest = await self._get_manifest(target, max_bytes=MAX_MANIFEST_BYTES)
            return ManifestDescriptor(manifest.digest, manifest.media_type, len(manifest.raw))
        length = response.headers.get("Content-Length", "")
        return ManifestDescriptor(
            digest=digest,
            media_type=media_type_of(response.headers.get("Content-Type")),
            size=int(length) if length.isdigit() else None,
        )

    async def _get_manifest(self, target: ImageReference, *, max_bytes: int) -> ManifestContent:
        path = f"/v2/{target.repository}/manifests/{target.reference}"
        response = await self._send("GET", path, headers={"Accept": MANIFEST_ACCEPT}, body_limit=max_bytes)
        if response.status_code != 200:
            raise await self._manifest_failure(response, target)
        raw = response.content
        host = self.location.api_host
        announced = response.headers.get("Docker-Content-Digest", "").strip()
        algorithm = digest_algorithm(target.digest) if target.digest else "sha256"
        digest = compute_digest(raw, algorithm)
        if target.digest is not None and digest != target.digest:
            raise DigestMismatch(f"the manifest {host} served for {target.digest} does not match it")
        comparable = is_digest(announced) and digest_algorithm(announced) == algorithm
        if comparable and announced != digest:
            raise DigestMismatch(f"{host} announced {announced} for a manifest whose digest is {digest}")
        media_type = media_type_of(response.headers.get("Content-Type"))
        return ManifestContent(media_type=media_type, digest=digest, raw=raw)

    async def _manifest_failure(
        self, response: httpx.Response, target: ImageReference
    ) -> RegistryClientError:
        exists = await self._repository_exists() if response.status_code == 404 else None
        return self._manifest_error(response, target, repository_exists=exists)

    async def _repository_exists(self) -> bool | None:
        """After a manifest 404: does the repository exist? (A HEAD 404 has no body, and distribution
        says MANIFEST_UNKNOWN even for unknown repositories; its tag list says NAME_UNKNOWN.)"""
        budget = min(_DIAGNOSIS_BUDGET_S, self.deadline.remaining() / 2)
        # Best effort, one short request: whatever goes wrong here, the 404 stands.
        with anyio.move_on_after(budget), contextlib.suppress(RegistryClientError), translate_errors():
            response = await self._send("GET", f"/v2/{self.image.repository}/tags/list?n=1")
            if response.status_code == 200:
                return True
            if response.status_code == 404:
                return False
        return None

    def _manifest_error(
        self, response: httpx.Response, target: ImageReference, *, repository_exists: bool | None = None
    ) -> RegistryClientError:
        status = response.status_code
        host = self.location.api_host
        method = response.request.method
        path = response.request.url.path
        diagnostics = parse_diagnostics(response.content) if method != "HEAD" else ()
        codes = {d.code for d in diagnostics}
        repository = target.repository
        if status == 404 or codes & {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"}:
            repository_missing = True if "NAME_UNKNOWN" in codes else None
            if repository_exists is not None:
                repository_missing = not repository_exists
            if repository_missing:
                message = f"repository {repository} not found on {self.location.host}"
            elif target.digest is not None:
                message = f"digest {target.digest} not found in {repository}"
            elif "MANIFEST_UNKNOWN" in codes or repository_missing is False:
                message = f"tag {target.tag} not found in {repository}"
            else:
                message = (
                    f"{repository}:{target.tag} not found on {self.location.host} (no such tag or repository)"
                )
            return ManifestNotFound(
                message,
                repository=repository,
                reference=target.reference,
                status=status,
                method=method,
                host=host,
                path=path,
                diagnostics=diagnostics,
                repository_missing=repository_missing,
            )
        if status == 401 and _bearer_error(response) == "invalid_token":
            return AuthenticationFailed(
                f"the registry at {host} rejected the token for {repository}",
                authority="registry",
                host=host,
                status=status,
            )
        if status in (401, 403):
            insufficient = status == 401
            given = self._credentials is not None
            if given:
                message = f"{repository} is missing, or these credentials cannot read it"
            else:
                message = f"{repository} is private or missing: add credentials that can read it"
            if status == 403 and given:
                message = f"the registry at {host} denied these credentials access to {repository} (403)"
            return AccessDenied(
                message,
                insufficient_scope=insufficient,
                credentials_given=given,
                status=status,
                method=method,
                host=host,
                path=path,
                diagnostics=diagnostics,
            )
        return self._status_error(response, what=f"the manifest of {repository}")

    def _status_error(self, response: httpx.Response, *, what: str) -> RegistryError:
        status = response.status_code
        host = response.request.url.host
        method = response.request.method
        path = response.request.url.path
        diagnostics = parse_diagnostics(response.content) if method != "HEAD" else ()
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            hint = f"; retry in {retry_after:.0f} s" if retry_after is not None else "; retry later"
            return TooManyRequests(
                f"{host} is rate-limiting requests (429){hint}",
                retry_after=retry_after,
                status=status,
                method=method,
                host=host,
                path=path,
                diagnostics=diagnostics,
            )
        return RegistryError(
            f"{host} answered {status} to {method} {what}",
            status=status,
            method=method,
            host=host,
            path=path,
            diagnostics=diagnostics,
        )


def _pick_challenge(challenges: list[Challenge], host: str) -> Challenge:
    """Prefer Bearer with a realm (scoped tokens), then Basic, then a realm-less Bearer (refused later
    with a clear message); a 401 without any challenge means Basic."""
    if not challenges:
        return Challenge(scheme="basic")
    ranked = sorted(
        (c for c in challenges if c.scheme in ("bearer", "basic")),
        key=lambda c: 0 if c.scheme == "bearer" and c.realm else 1 if c.scheme == "basic" else 2,
    )
    if ranked:
        return ranked[0]
    schemes = ", ".join(sorted({c.scheme for c in challenges}))
    raise UnsupportedChallenge(f"{host} asks for {schemes} authentication; guara speaks Basic and Bearer")


def _bearer_error(response: httpx.Response) -> str | None:
    try:
        challenges = parse_www_authenticate_headers(response.headers.get_list("www-authenticate"))
    except ValueError:
        return None
    for challenge in challenges:
        if challenge.scheme == "bearer" and "error" in challenge.params:
            return challenge.params["error"]
    return None


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """The one place where httpx, TLS and network-guard exceptions become registry errors."""
    try:
        yield
    except RegistryClientError:
        raise
    except DestinationBlocked as exc:
        raise DestinationRefused(str(exc), host=exc.host, blocked=True, reason=exc.reason) from exc
    except DisallowedURL as exc:
        raise DestinationRefused(str(exc), host="", blocked=False, reason="disallowed URL") from exc
    except ResolutionFailed as exc:
        raise NameResolutionFailed(str(exc), host=exc.host) from exc
    except NetGuardError as exc:
        raise DestinationRefused(str(exc), host="", blocked=True, reason=type(exc).__name__) from exc
    except httpx.TimeoutException as exc:
        raise DeadlineExceeded(f"{_host_of(exc)} did not answer in time") from exc
    except httpx.TooManyRedirects as exc:
        raise ProtocolViolation(
            f"{_host_of(exc)} redirected more than {MAX_REDIRECTS} times (a redirect loop?)"
        ) from exc
    except httpx.ConnectError as exc:
        host = _host_of(exc)
        tls = _tls_cause(exc)
        if tls is not None:
            raise TLSFailed(f"TLS with {host} failed: {_describe_tls(tls)}", host=host) from exc
        raise ConnectFailed(f"could not connect to {host} (refused or unreachable)", host=host) from exc
    except httpx.UnsupportedProtocol as exc:
        raise ProtocolViolation(f"{_host_of(exc)} redirected to an unsupported URL scheme") from exc
    except (httpx.InvalidURL, httpx.LocalProtocolError) as exc:
        raise ProtocolViolation(f"could not build a valid request for {_host_of(exc)}") from exc
    except httpx.TransportError as exc:
        host = _host_of(exc)
        if isinstance(exc, httpx.RemoteProtocolError) and str(exc).startswith(_BAD_LOCATION):
            raise ProtocolViolation(f"{host} redirected to a malformed URL") from exc
        tls = _tls_cause(exc)
        if tls is not None:
            raise TLSFailed(f"TLS with {host} failed: {_describe_tls(tls)}", host=host) from exc
        raise ConnectionBroken(
            f"the connection to {host} broke ({type(exc).__name__}); the server closed or reset it",
            host=host,
        ) from exc
    except idna.IDNAError as exc:
        # httpx decodes an xn-- host of a redirect target while following it, with idna.
        raise ProtocolViolation(
            "a redirect points to a host name that is not valid IDNA (a bad xn-- label)"
        ) from exc
    except httpx.StreamError as exc:
        raise ProtocolViolation(f"a response body could not be read ({type(exc).__name__})") from exc
    except ssl.SSLError as exc:
        raise TLSFailed(f"TLS failed: {_describe_tls(exc)}", host="") from exc
    except OSError as exc:
        raise ConnectionBroken(f"network failure ({type(exc).__name__})", host="") from exc


def _host_of(exc: Exception) -> str:
    try:
        url = exc.request.url if isinstance(exc, httpx.HTTPError) else None
    except RuntimeError:  # httpx raises this when the error was built without a request
        url = None
    return "the registry" if url is None else url.netloc.decode("ascii", "replace")


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        current = current.__cause__ or current.__context__
    if "SSL" in str(exc) or "CERTIFICATE" in str(exc):
        return ssl.SSLError(str(exc))
    return None


def _describe_tls(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or "certificate verification failed"
        return (
            f"the certificate is not trusted ({detail}); if the registry uses a private CA, "
            "give its certificate as the CA file (GUARA_EXTRA_CA_FILE)"
        )
    reason = getattr(exc, "reason", None) or str(exc)
    return f"{reason} (is it an https server?)"
