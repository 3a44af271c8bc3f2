"""Deploy: resolve an image for deploy (pull-checked, digest pinned), render it for Kubernetes, and
optionally apply it.

- ``resolve_image(image, platform=..., registry=, username=, password=, ...)`` → ``ResolvedImage`` or
  ``ResolveFailure`` (one of the six preflight codes), through the network guard under one deadline.
- ``render_workload(resolved, project_id=, service_id=, service_name=, deployment_id=, credentials=)`` →
  ``RenderedWorkload`` (``.objects`` real, in memory only; ``.redacted()`` to store and show).
- ``KubernetesApplier`` (server-side apply with the official client) implements ``ManifestApplier``.
- ``DockerEngine(url)`` runs a pinned image on a container engine through the Docker Engine API
  (Podman or dockerd): ``pull`` (credentials as ``EngineAuth``, one pull only), ``run`` a
  ``ContainerSpec`` (locked down, on its project's network, one port published), ``wait_ready``,
  ``logs``, ``inspect`` / ``list_containers`` (``ContainerState``), ``remove``, ``remove_network``.

No database, no settings import: ``guara.core.deployments`` feeds it. Errors: ``guara.deploy.errors``.
"""

from .apply import FIELD_MANAGER, KubernetesApplier, ManifestApplier, load_configuration
from .engine import (
    KEPT_CAPABILITIES,
    PROJECT_LABEL,
    ContainerSpec,
    ContainerState,
    DockerEngine,
    EngineAuth,
    EngineInfo,
    RunningContainer,
)
from .errors import (
    ApplyFailed,
    DeployError,
    EngineError,
    EngineNotFound,
    EngineUnavailable,
    ImageUnusable,
    InvalidManifest,
    InvalidPlatform,
    NoMatchingPlatform,
    NotAContainerImage,
    PullFailed,
    StartFailed,
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
    render_pull_secret,
    render_workload,
    workload_refs,
)
from .resolve import (
    MAX_CONFIG_BYTES,
    ImagePlatforms,
    Resolution,
    ResolvedImage,
    ResolveFailure,
    image_platforms,
    resolve_image,
)
from .validate import validate_objects

__all__ = [
    "DEFAULT_PLATFORM",
    "DOCKER_HUB_CONFIG_KEY",
    "FIELD_MANAGER",
    "KEPT_CAPABILITIES",
    "MAX_CONFIG_BYTES",
    "PROJECT_LABEL",
    "REDACTED_VALUE",
    "ApplyFailed",
    "ContainerSpec",
    "ContainerState",
    "DeployError",
    "DockerEngine",
    "EngineAuth",
    "EngineError",
    "EngineInfo",
    "EngineNotFound",
    "EngineUnavailable",
    "ImagePlatforms",
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
    "PullFailed",
    "RenderedWorkload",
    "Resolution",
    "ResolveFailure",
    "ResolvedImage",
    "RunningContainer",
    "StartFailed",
    "WorkloadNames",
    "dockerconfig_key",
    "image_platforms",
    "load_configuration",
    "namespace_for",
    "parse_platform",
    "pull_secret_ref",
    "render_pull_secret",
    "render_workload",
    "resolve_image",
    "select_platform",
    "validate_objects",
    "workload_refs",
]
