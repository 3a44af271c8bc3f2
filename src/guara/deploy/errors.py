"""Errors raised by the deploy package.

Error tree (catch the root to handle every failure of this package)::

    DeployError                 root of every error raised by guara.deploy
     ├── ImageUnusable          the reference resolves, but not to something we can run
     │    ├── NoMatchingPlatform  an index without the wanted platform, or an image built for another
     │    └── NotAContainerImage  an artifact (Helm chart, signature...) or a schema-1 manifest
     ├── InvalidPlatform        (also ValueError) a platform string that is not os/arch[/variant]
     ├── InvalidManifest        a rendered object the Kubernetes object schemas refuse (a guara bug)
     ├── ApplyFailed            the Kubernetes API refused or could not be reached (.kind, .name, .status)
     └── EngineError            a container engine (Docker Engine API: Podman or dockerd) refused or
          │                     failed a call (.code, .status); codes of the root itself:
          │                     ``engine_error`` (any other refusal), ``conflict`` (a name in use),
          │                     ``network_conflict`` (the network exists but is not this project's),
          │                     ``network_in_use`` (containers still attached), ``unsupported``
          │                     (what this engine cannot do: IPv6 publishing on Podman's IPv4
          │                     networks), ``closed`` (aclose()d)
          ├── EngineUnavailable  code ``engine_unavailable``: the socket is missing or refuses
          │                     connections, or the engine did not answer within the API timeout
          ├── EngineNotFound     code ``not_found``: no such container, network or image
          ├── PullFailed         code ``auth_failed`` | ``manifest_not_found`` | ``network_error`` |
          │                     ``timeout`` (the preflight's codes): the engine could not pull the image
          └── StartFailed        code ``start_failed``: the container did not start or become ready;
                                ``.logs`` holds its last log lines (at most 50, 8 KiB, cleaned)

Registry and network failures during resolution are ``guara.registry`` errors, mapped to the six
preflight codes by the preflight's own mapping. Messages never hold a secret: an ``ApplyFailed`` for a
Secret never quotes the API server's answer, which may echo the Secret's data; a ``PullFailed`` never
holds the password, the ``X-Registry-Auth`` header or any encoding of them, and is raised without a
cause or a traceback leading to the request that carried them.
"""

from __future__ import annotations

from guara.registry import PreflightCode


class DeployError(Exception):
    """Root of every error raised by guara.deploy."""


class ImageUnusable(DeployError):
    """The reference names something that exists but cannot be deployed as asked."""


class NoMatchingPlatform(ImageUnusable):
    """No manifest for the wanted platform (``available`` lists what there is)."""

    def __init__(self, message: str, *, wanted: str, available: tuple[str, ...]) -> None:
        super().__init__(message)
        self.wanted = wanted
        self.available = available


class NotAContainerImage(ImageUnusable):
    """The manifest is not a runnable container image."""


class InvalidPlatform(DeployError, ValueError):
    """A platform string that is not ``os/architecture[/variant]``."""


class InvalidManifest(DeployError):
    """A rendered object does not satisfy the Kubernetes object schema."""


class ApplyFailed(DeployError):
    """Applying to the cluster failed. ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, *, kind: str, name: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.status = status


class EngineError(DeployError):
    """A container engine call failed. ``code`` names the failure (see the tree above); ``status`` is
    the engine's HTTP status when it answered one."""

    code: str = "engine_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.status = status


class EngineUnavailable(EngineError):
    """The engine's socket is missing or refuses connections, or the engine did not answer in time."""

    code = "engine_unavailable"


class EngineNotFound(EngineError):
    """The container, network or image named does not exist on the engine."""

    code = "not_found"


class PullFailed(EngineError):
    """The engine could not pull the image. ``code`` is one of the preflight's codes: ``auth_failed``,
    ``manifest_not_found``, ``network_error`` or ``timeout``."""

    code: PreflightCode

    def __init__(self, message: str, *, code: PreflightCode, status: int | None = None) -> None:
        super().__init__(message, code=code, status=status)


class StartFailed(EngineError):
    """The container could not be started, exited, or did not become ready in time. ``logs`` holds
    the last lines of its log (bounded and cleaned of control characters; not redacted)."""

    code = "start_failed"

    def __init__(self, message: str, *, logs: tuple[str, ...] = (), status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.logs = logs
