"""Image references and registry locations, parsed once into types.

The reference grammar is distribution/reference's, through the ``docker-image-py`` port; this module
wraps it and closes its gaps: trailing newlines and control characters (its patterns end in ``$``),
IPv6 literals it does not check (``[::::]``), ports above 65535, host labels over 63 characters, the
other Docker Hub aliases (``registry-1.docker.io``) and ``ValueError`` compatibility. Hosts are judged
by ``hosts.authority_problem``, the rule realms and redirects are held to as well: it refuses the
numeric hosts the grammar takes for names (``0177.0.0.1``, ``999.1.1.1``) and invalid ``xn--`` labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from docker_image import digest as _digest_mod
from docker_image import reference as _reference_mod

from .errors import InvalidReference, InvalidRegistry
from .hosts import authority_problem

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DEFAULT_TAG = "latest"
OFFICIAL_NAMESPACE = "library"

MAX_REFERENCE_LENGTH = 1024  # far above any valid reference; bounds the regex work on hostile input
MAX_PATH_LENGTH = 255

_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*\Z")


@dataclass(frozen=True, slots=True)
class RegistryLocation:
    """Where a registry answers. ``host`` is canonical: ``docker.io`` for Docker Hub, else host[:port]
    as written; ``scheme`` is ``https`` unless plain HTTP was explicitly allowed and asked for."""

    host: str
    scheme: str = "https"

    @property
    def api_host(self) -> str:
        """The authority the API is served from (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API_HOST if self.host == DOCKER_HUB else self.host

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.api_host}"

    @property
    def is_docker_hub(self) -> bool:
        return self.host == DOCKER_HUB

    def __str__(self) -> str:
        return self.host if self.scheme == "https" else f"{self.scheme}://{self.host}"


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed image reference. ``tag`` is ``"latest"`` when neither tag nor digest was given, and
    None when only a digest was; when both are given the digest wins (see ``reference``)."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API_HOST if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        if self.digest is not None:
            return self.digest
        assert self.tag is not None
        return self.tag

    @property
    def location(self) -> RegistryLocation:
        return RegistryLocation(host=self.registry)

    def with_reference(self, reference: str) -> ImageReference:
        """The same repository at another tag or digest (validated)."""
        if ":" in reference:
            return parse_image_reference(f"{self.registry}/{self.repository}@{reference}")
        return parse_image_reference(f"{self.registry}/{self.repository}:{reference}")

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_image_reference(text: str) -> ImageReference:
    """Parse an image reference the way ``docker pull`` does; raise InvalidReference when malformed."""
    if not isinstance(text, str):
        raise InvalidReference("the image reference must be text")
    if not text:
        raise InvalidReference("the image reference is empty")
    if len(text) > MAX_REFERENCE_LENGTH:
        raise InvalidReference(f"the image reference is longer than {MAX_REFERENCE_LENGTH} characters")
    if not _PRINTABLE_ASCII.match(text):
        raise InvalidReference("the image reference contains spaces, control or non-ASCII characters")
    if "://" in text:
        raise InvalidReference(
            "an image reference has no scheme: write host/repository:tag, e.g. ghcr.io/acme/api:v1"
        )
    try:
        parsed = _reference_mod.Reference.parse_normalized_named(text)
    except _reference_mod.NameTooLong as exc:
        raise InvalidReference(f"the repository path is longer than {MAX_PATH_LENGTH} characters") from exc
    except (_reference_mod.InvalidReference, _digest_mod.InvalidDigest) as exc:
        raise InvalidReference(_describe_grammar_error(text, exc)) from exc

    domain: str = parsed.domain()
    path: str = parsed.path()
    tag: str | None = parsed["tag"]
    digest: str | None = parsed["digest"]

    _check_authority(domain, InvalidReference)
    registry = _canonical_registry(domain)
    if registry == DOCKER_HUB and "/" not in path:
        path = f"{OFFICIAL_NAMESPACE}/{path}"
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidReference(f"the repository path is longer than {MAX_PATH_LENGTH} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(registry=registry, repository=path, tag=tag, digest=digest)


def parse_registry(text: str, *, allow_http: bool = False) -> RegistryLocation:
    """Parse the Registry URL field: ``host``, ``host:port`` or ``https://host[:port]`` (a trailing
    ``/`` is tolerated). ``http://`` only with ``allow_http``. No path, credentials, query or fragment."""
    if not isinstance(text, str):
        raise InvalidRegistry("the registry must be text")
    if not text:
        raise InvalidRegistry("the registry URL is empty")
    if len(text) > MAX_REFERENCE_LENGTH or not _PRINTABLE_ASCII.match(text):
        raise InvalidRegistry("the registry URL contains spaces, control or non-ASCII characters")
    scheme = "https"
    rest = text
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
        if scheme == "http":
            if not allow_http:
                raise InvalidRegistry(
                    "plain-HTTP registries are refused: use an https:// registry "
                    "(operators may allow HTTP with GUARA_ALLOW_HTTP_REGISTRIES)"
                )
        elif scheme != "https":
            raise InvalidRegistry(f"the registry URL must start with https://, not {scheme}://")
    if "@" in rest:
        raise InvalidRegistry("the registry URL must not contain credentials (user@host)")
    if "?" in rest or "#" in rest:
        raise InvalidRegistry("the registry URL must not contain a query or fragment")
    authority, slash, path = rest.partition("/")
    if slash and path:
        raise InvalidRegistry(
            f"the registry URL is just the host, without a path: write {authority!r}, "
            "and put the repository in the image reference"
        )
    if not authority:
        raise InvalidRegistry("the registry URL has no host")
    _check_authority(authority, InvalidRegistry)
    return RegistryLocation(host=_canonical_registry(authority), scheme=scheme)


def same_registry(
    a: str | RegistryLocation | ImageReference, b: str | RegistryLocation | ImageReference
) -> bool:
    """Whether two registries are the same one: Docker Hub aliases fold, host names compare
    case-insensitively, ``:443`` equals no port. Unparseable text is never the same registry."""
    try:
        return _registry_key(a) == _registry_key(b)
    except InvalidRegistry:
        return False


def _registry_key(value: str | RegistryLocation | ImageReference) -> tuple[str, int | None]:
    if isinstance(value, ImageReference):
        host = value.registry
    elif isinstance(value, RegistryLocation):
        host = value.host
    else:
        host = parse_registry(value, allow_http=True).host
    hostname, port = split_authority(host)
    if port == 443:
        port = None
    hostname = hostname.lower().rstrip(".")
    if hostname in DOCKER_HUB_ALIASES and port is None:
        hostname = DOCKER_HUB
    return hostname, port


def split_authority(authority: str) -> tuple[str, int | None]:
    """``host[:port]`` → (host without brackets, port or None). Assumes a checked authority."""
    if authority.startswith("["):
        inside, _, after = authority[1:].partition("]")
        return inside, int(after[1:]) if after.startswith(":") else None
    host, colon, port = authority.partition(":")
    return host, int(port) if colon else None


def _canonical_registry(authority: str) -> str:
    return DOCKER_HUB if authority.lower() in DOCKER_HUB_ALIASES else authority


def _check_authority(authority: str, error: type[ValueError]) -> None:
    """Validate ``host[:port]`` by the one host rule (see ``hosts``): name, IPv4 or [IPv6], port 1-65535."""
    problem = authority_problem(authority)
    if problem is not None:
        raise error(f"invalid registry host: {problem}")


def _shown(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _describe_grammar_error(text: str, exc: Exception) -> str:
    shown = _shown(text)
    if isinstance(exc, _reference_mod.NameContainsUppercase) or "lowercase" in str(exc):
        return f"invalid image reference {shown}: the repository name must be lower-case"
    if isinstance(exc, _digest_mod.InvalidDigest):
        return f"invalid image reference {shown}: the digest is malformed ({exc})"
    if isinstance(exc, _reference_mod.NameEmpty):
        return "the image reference is empty"
    if "64-byte hexadecimal" in str(exc):
        return f"invalid image reference {shown}: a bare 64-character hex string is not a name"
    return (
        f"invalid image reference {shown}: expected [host[:port]/]repository[:tag][@digest], "
        "with a lower-case repository"
    )
