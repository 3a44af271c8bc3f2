"""Deploy: resolve an image for deploy (pull-checked, digest pinned), render it for Kubernetes, and
optionally apply it.

- ``resolve_image(image, platform=..., registry=, username=, password=, ...)`` → ``ResolvedImage`` or
  ``ResolveFailure`` (one of the six preflight codes), through the network guard under one deadline.
- ``render_workload(resolved, project_id=, service_id=, service_name=, deployment_id=, credentials=)`` →
  ``RenderedWorkload`` (``.objects`` real, in memory only; ``.redacted()`` to store and show).
- ``KubernetesApplier`` (server-side apply with the official client) implements ``ManifestApplier``.

No database, no settings import: ``guara.core.deployments`` feeds it. Errors: ``guara.deploy.errors``.
"""

from .apply import FIELD_MANAGER, KubernetesApplier, ManifestApplier, load_configuration
from .errors import (
    ApplyFailed,
    DeployError,
    ImageUnusable,
    InvalidManifest,
    InvalidPlatform,
    NoMatchingPlatform,
    NotAContainerImage,
)
from .platforms import DEFAULT_PLATFORM, PlatformSpec, parse_platform, select_platform
from .render import (
    DOCKER_HUB_CONFIG_KEY,
    REDACTED_VALUE,
    ObjectRef,
    PullCredentials,
    RenderedWorkload,
    WorkloadNames,
    dockerconfig_key,
    namespace_for,
    pull_secret_ref,
    render_workload,
)
from .resolve import MAX_CONFIG_BYTES, Resolution, ResolvedImage, ResolveFailure, resolve_image
from .validate import validate_objects

__all__ = [
    "DEFAULT_PLATFORM",
    "DOCKER_HUB_CONFIG_KEY",
    "FIELD_MANAGER",
    "MAX_CONFIG_BYTES",
    "REDACTED_VALUE",
    "ApplyFailed",
    "DeployError",
    "ImageUnusable",
    "InvalidManifest",
    "InvalidPlatform",
    "KubernetesApplier",
    "ManifestApplier",
    "NoMatchingPlatform",
    "NotAContainerImage",
    "ObjectRef",
    "PlatformSpec",
    "PullCredentials",
    "RenderedWorkload",
    "Resolution",
    "ResolveFailure",
    "ResolvedImage",
    "WorkloadNames",
    "dockerconfig_key",
    "load_configuration",
    "namespace_for",
    "parse_platform",
    "pull_secret_ref",
    "render_workload",
    "resolve_image",
    "select_platform",
    "validate_objects",
]
