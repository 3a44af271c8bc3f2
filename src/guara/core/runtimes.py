"""Where a resolved image goes: nowhere (render only), a Kubernetes cluster, or a container engine.

The deployment runner (``guara.core.deploy_runner``) resolves the image and hands each runtime a
``DeployJob``; the runtime answers with an ``Outcome``. Every runtime keeps one rule about credentials:
the ones the deploy read must still be the stored ones when it acts on them (checked before acting and,
where what it wrote outlives the deploy, after), so a removal during a deploy is never undone.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import anyio.to_thread

from guara.core import credentials
from guara.core.preflights import RegistryLogin
from guara.core.pull_secrets import PullSecretRefresher
from guara.deploy import (
    ApplyFailed,
    DeployError,
    ManifestApplier,
    ObjectRef,
    PullCredentials,
    RenderedWorkload,
    ResolvedImage,
    namespace_for,
    pull_secret_ref,
    render_workload,
    workload_refs,
)
from guara.registry import InvalidRegistry, parse_registry

if TYPE_CHECKING:
    from guara.context import AppContext

# Deployment statuses.
PENDING = "pending"
RESOLVING = "resolving"
STARTING = "starting"  # a container engine: pulled, the container is starting
SUCCEEDED = "succeeded"  # rendered (and applied to a cluster)
RUNNING = "running"  # a container engine: serving
REPLACED = "replaced"  # a container engine: was running, a newer deployment took over
STOPPED = "stopped"  # a container engine: was running, the service was stopped
FAILED = "failed"

# Codes of a failed deployment, beside the six preflight codes.
APPLY_FAILED = "apply_failed"
START_FAILED = "start_failed"
ENGINE_UNAVAILABLE = "engine_unavailable"
INTERRUPTED = "interrupted"
INTERNAL_ERROR = "internal_error"
CREDENTIALS_REMOVED = "credentials_removed"

REMOVED_MESSAGE = (
    "The service's registry credentials were removed or replaced while this deployment ran, so it "
    "stopped{what}; deploy again to use the current ones."
)


@dataclass(frozen=True)
class DeployJob:
    """A deployment whose image is resolved: what a runtime needs to make it run."""

    deployment_id: uuid.UUID
    project_id: uuid.UUID
    service_id: uuid.UUID
    service_name: str
    port: int
    health_path: str | None
    image: ResolvedImage
    # Opened for this deploy only; None for anonymous pulls.
    login: RegistryLogin | None
    # The stored credentials when the deploy began (None: none), to notice a removal meanwhile.
    fingerprint: str | None


@dataclass(frozen=True)
class ServiceRef:
    """A service as runtimes name what they run for it."""

    project_id: uuid.UUID
    service_id: uuid.UUID
    name: str


class RemovalFailed(Exception):
    """What a runtime runs for a service could not be removed; ``str()`` says what, for people."""


@dataclass(frozen=True)
class Outcome:
    status: str
    message: str
    code: str | None = None
    digest: str | None = None
    manifests: list[dict[str, Any]] | None = None
    container_id: str | None = None
    url: str | None = None
    started_at: datetime | None = None
    # Earlier deployments of the service this one takes over from, and their containers: recorded as
    # replaced with this outcome, removed right after (the new container already serves).
    replaced: tuple[uuid.UUID, ...] = field(default=())
    retired_containers: tuple[str, ...] = field(default=())


class Runtime(Protocol):
    name: str

    async def deploy(self, ctx: AppContext, job: DeployJob) -> Outcome: ...

    async def withdraw_credentials(self, project_id: uuid.UUID, service_name: str) -> str:
        """Remove whatever the runtime holds of a service's removed credentials; a note for people."""
        ...

    async def reconcile(self, ctx: AppContext) -> int:
        """Bring what the runtime runs in line with the database; how many things were removed."""
        ...

    async def remove_service(self, service: ServiceRef) -> str:
        """Remove everything the runtime runs or holds for a service being deleted (containers,
        Kubernetes objects incl. the pull Secret); a note for people. Raises ``RemovalFailed`` when
        something could not be removed (the service is then not deleted)."""
        ...

    async def remove_project(self, project_id: uuid.UUID) -> str:
        """Remove what the runtime keeps per project (an engine network, a Kubernetes Namespace) once
        its services are removed; a note for people. Raises ``RemovalFailed``."""
        ...

    async def retire(self, container_ids: tuple[str, ...]) -> None:
        """Remove containers a newer deployment took over from (after that was recorded)."""
        ...


async def credentials_unchanged(ctx: AppContext, job: DeployJob) -> bool:
    """Whether the credentials the deploy read are still the stored ones."""
    if job.fingerprint is None:
        return True
    current = await ctx.db.run(lambda session: credentials.fingerprint(session, service_id=job.service_id))
    return current == job.fingerprint


def resolution_summary(image: ResolvedImage) -> str:
    source = f" from the multi-platform index {image.index_digest}" if image.index_digest else ""
    how = "with the stored registry credentials" if image.with_credentials else "anonymously"
    return f"Pinned {image.pinned} ({image.platform}{source}), pulled {how} in {image.elapsed_ms} ms"


async def _render(job: DeployJob) -> RenderedWorkload:
    # Rendering validates with the kubernetes models (CPU, and a heavy first import): off the loop.
    return await anyio.to_thread.run_sync(
        functools.partial(
            render_workload,
            job.image,
            project_id=job.project_id,
            service_id=job.service_id,
            service_name=job.service_name,
            deployment_id=job.deployment_id,
            credentials=_pull_credentials(job.login),
        )
    )


def _objects_summary(job: DeployJob, rendered: RenderedWorkload) -> str:
    return (
        f"{resolution_summary(job.image)}; {len(rendered.objects)} Kubernetes objects for namespace "
        f"{rendered.names.namespace}"
    )


def _pull_credentials(login: RegistryLogin | None) -> PullCredentials | None:
    if login is None:
        return None
    try:
        location = parse_registry(login.registry, allow_http=True)
    except InvalidRegistry as exc:  # resolution already used it, so this cannot happen
        raise DeployError("the stored registry is invalid") from exc
    return PullCredentials(location, login.username, login.password)


class RenderRuntime:
    """Nothing runs: the Kubernetes objects are rendered and recorded (with the Secret redacted)."""

    name = "render"

    async def deploy(self, ctx: AppContext, job: DeployJob) -> Outcome:
        rendered = await _render(job)
        message = f"{_objects_summary(job, rendered)}; rendered only (no engine or cluster is configured)."
        return Outcome(SUCCEEDED, message, digest=job.image.digest, manifests=rendered.redacted())

    async def withdraw_credentials(self, project_id: uuid.UUID, service_name: str) -> str:
        return ""

    async def remove_service(self, service: ServiceRef) -> str:
        return ""

    async def remove_project(self, project_id: uuid.UUID) -> str:
        return ""

    async def reconcile(self, ctx: AppContext) -> int:
        return 0

    async def retire(self, container_ids: tuple[str, ...]) -> None:
        return None


class KubernetesRuntime:
    """The rendered objects applied to a cluster with server-side apply."""

    name = "kubernetes"

    def __init__(self, applier: ManifestApplier) -> None:
        self.applier = applier
        # Pull Secrets made from cloud registry tokens expire: renewed on the reconcile rounds.
        self.pull_secrets = PullSecretRefresher(applier)

    async def deploy(self, ctx: AppContext, job: DeployJob) -> Outcome:
        rendered = await _render(job)
        manifests = rendered.redacted()
        summary = _objects_summary(job, rendered)
        digest = job.image.digest
        removed = Outcome(FAILED, REMOVED_MESSAGE.format(what=""), CREDENTIALS_REMOVED, digest, manifests)
        if not await credentials_unchanged(ctx, job):
            return removed
        try:
            await self.applier.apply(rendered.objects, absent=rendered.absent)
        except ApplyFailed as exc:
            return Outcome(FAILED, f"{summary}; applying failed: {exc}.", APPLY_FAILED, digest, manifests)
        if not await credentials_unchanged(ctx, job):
            # Removed while this deploy applied them: take back the pull Secret it just wrote, so the
            # removal wins whichever finished first (the removal deletes it too).
            ref = pull_secret_ref(job.project_id, job.service_name)
            try:
                await self.applier.apply([], absent=[ref])
            except ApplyFailed as exc:
                message = f"{removed.message} Deleting its pull Secret failed: {exc}."
                return Outcome(FAILED, message, APPLY_FAILED, digest, manifests)
            message = REMOVED_MESSAGE.format(what=" and deleted the pull Secret it had applied")
            return Outcome(FAILED, message, CREDENTIALS_REMOVED, digest, manifests)
        if job.image.exchanged is not None:
            self.pull_secrets.written(job.service_id)
            summary += "; its pull Secret holds a short-lived cloud registry token, renewed before it expires"
        namespace = rendered.names.namespace
        message = f"{summary}; applied to Kubernetes namespace {namespace} (server-side apply)."
        return Outcome(SUCCEEDED, message, digest=digest, manifests=manifests)

    async def withdraw_credentials(self, project_id: uuid.UUID, service_name: str) -> str:
        try:
            await self.applier.apply([], absent=[pull_secret_ref(project_id, service_name)])
        except ApplyFailed as exc:
            return (
                f"The pull Secret could not be deleted from the cluster yet ({exc}); "
                "the next deploy removes it."
            )
        return "Its pull Secret was deleted from the cluster."

    async def remove_service(self, service: ServiceRef) -> str:
        refs = workload_refs(service.project_id, service.name)
        try:
            await self.applier.apply([], absent=list(refs))
        except ApplyFailed as exc:
            raise RemovalFailed(f"its Kubernetes objects could not be deleted: {exc}") from exc
        return "Its Kubernetes Deployment and pull Secret were deleted from the cluster."

    async def remove_project(self, project_id: uuid.UUID) -> str:
        namespace = namespace_for(project_id)
        try:
            await self.applier.apply([], absent=[ObjectRef("Namespace", namespace, namespace)])
        except ApplyFailed as exc:
            raise RemovalFailed(f"its Kubernetes namespace could not be deleted: {exc}") from exc
        return f"Its Kubernetes namespace {namespace} was deleted."

    async def reconcile(self, ctx: AppContext) -> int:
        await self.pull_secrets.refresh_due(ctx)  # server-side apply converges on each deploy otherwise
        return 0

    async def retire(self, container_ids: tuple[str, ...]) -> None:
        return None
