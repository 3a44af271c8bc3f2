"""Errors raised by the deploy package.

Error tree (catch the root to handle every failure of this package)::

    DeployError                 root of every error raised by guara.deploy
     ├── ImageUnusable          the reference resolves, but not to something we can run
     │    ├── NoMatchingPlatform  an index without the wanted platform, or an image built for another
     │    └── NotAContainerImage  an artifact (Helm chart, signature...) or a schema-1 manifest
     ├── InvalidPlatform        (also ValueError) a platform string that is not os/arch[/variant]
     ├── InvalidManifest        a rendered object the Kubernetes object schemas refuse (a guara bug)
     └── ApplyFailed            the Kubernetes API refused or could not be reached (.kind, .name, .status)

Registry and network failures during resolution are ``guara.registry`` errors, mapped to the six
preflight codes by the preflight's own mapping. Messages never hold a secret: an ``ApplyFailed`` for a
Secret never quotes the API server's answer, which may echo the Secret's data.
"""

from __future__ import annotations


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
