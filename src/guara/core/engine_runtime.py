"""The container-engine runtime: pull the pinned digest with the stored credentials, start it, check it,
swap it in.

For one deployment (``deploy``):

1. the registry host passes the network guard again, right before the engine pulls from it (the engine
   connects by itself, outside guara's sockets: the guard can only vouch for the address it sees now);
2. the engine pulls ``registry/repository@sha256:…``; the credentials go to the engine for that one pull,
   as the ``X-Registry-Auth`` header only (no auth file, config, environment variable or label);
3. a container starts on the project's own engine network, its port published on
   ``GUARA_ENGINE_PUBLISH_IP``, with memory and CPU limits and no privileges;
4. it must become ready (the port answers, or the health path answers below 400) within
   ``GUARA_ENGINE_START_TIMEOUT_S``; otherwise it is removed, the previous container keeps serving, and
   the deployment fails ``start_failed`` with the last lines of its log (bounded, redacted);
5. only then does it take over: the previous deployments are recorded ``replaced`` with this one's
   success, and their containers removed after a short drain (``DeploymentRunner.drain_s``); a
   removal that fails or is cut short is done by the reconciliation (a replaced deployment's container
   never belongs on the engine).

Access is decided by guara before the pull (the image was resolved with the same credentials through
the guard): some engines do not ask the registry again for a digest they already hold.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
from sqlalchemy import select
from sqlalchemy.orm import Session

from guara.core import credentials
from guara.core.runtimes import (
    CREDENTIALS_REMOVED,
    ENGINE_UNAVAILABLE,
    FAILED,
    REMOVED_MESSAGE,
    RUNNING,
    START_FAILED,
    STARTING,
    DeployJob,
    Outcome,
    RemovalFailed,
    ServiceRef,
    resolution_summary,
)
from guara.deploy import (
    PROJECT_LABEL,
    ContainerSpec,
    DockerEngine,
    EngineAuth,
    EngineError,
    EngineUnavailable,
    PullFailed,
    StartFailed,
)
from guara.deploy.engine import MANAGED_BY_LABEL
from guara.deploy.render import LABEL_PREFIX
from guara.netguard import DestinationBlocked, NetGuardError
from guara.netguard.backend import GuardedBackend
from guara.registry import PreflightCode
from guara.registry.reference import split_authority
from guara.secrets import redact_text
from guara.store.models import Deployment, utcnow

if TYPE_CHECKING:
    from guara.context import AppContext

logger = logging.getLogger("guara.deploy.engine")

# The link between what the engine runs and what the database says (set on every container).
MANAGED_LABEL = MANAGED_BY_LABEL
SERVICE_LABEL = f"{LABEL_PREFIX}/service-id"
DEPLOYMENT_LABEL = f"{LABEL_PREFIX}/deployment-id"

MEMORY_BYTES = 512 * 1024 * 1024
NANO_CPUS = 1_000_000_000
PULL_TIMEOUT_S = 600.0
LOG_LINES_IN_MESSAGE = 20
MAX_LOG_TAIL = 1000


def network_name(project_id: uuid.UUID) -> str:
    """One engine network per project: containers of other projects cannot reach them by name."""
    return f"guara-{project_id.hex}"


def container_name(job: DeployJob) -> str:
    return f"guara-{job.project_id.hex[:8]}-{job.service_name}-{job.deployment_id.hex[:8]}"


def labels_for(job: DeployJob) -> dict[str, str]:
    return {
        MANAGED_LABEL: "guara",
        PROJECT_LABEL: str(job.project_id),
        SERVICE_LABEL: str(job.service_id),
        DEPLOYMENT_LABEL: str(job.deployment_id),
    }


def redacted_lines(lines: list[str]) -> list[str]:
    """Container output as people may see it: every credential this process knows of scrubbed."""
    return [redact_text(line) for line in lines]


class EngineRuntime:
    """Runs deployments as containers on one engine (Podman or Docker, through the Engine API)."""

    name = "engine"

    def __init__(
        self,
        engine: DockerEngine,
        *,
        publish_ip: str,
        start_timeout_s: float,
        pull_timeout_s: float = PULL_TIMEOUT_S,
    ) -> None:
        self.engine = engine
        self.publish_ip = publish_ip
        self.start_timeout_s = start_timeout_s
        self.pull_timeout_s = pull_timeout_s

    async def deploy(self, ctx: AppContext, job: DeployJob) -> Outcome:
        image = job.image
        digest = image.digest
        summary = resolution_summary(image)
        blocked = await _guard_refusal(ctx, image.reference.api_host)
        if blocked is not None:
            return Outcome(FAILED, f"{summary}; the pull was not started: {blocked[1]}", blocked[0], digest)
        auth = None
        if job.login is not None:
            auth = EngineAuth(image.reference.registry, job.login.username, job.login.password)
        try:
            await self.engine.pull(image.pinned, auth=auth, timeout_s=self.pull_timeout_s)
        except PullFailed as exc:
            return Outcome(FAILED, f"{summary}; the engine could not pull it: {exc}", exc.code, digest)
        except EngineError as exc:
            return Outcome(FAILED, f"{summary}; {exc}", exc.code, digest)
        # The engine keeps nothing of the credentials: checking once, after the pull, is enough to
        # start nothing with credentials removed meanwhile.
        message = f"{summary}; starting a container."
        if not await ctx.db.run(lambda s: _mark_starting(s, job, message)):
            return Outcome(FAILED, REMOVED_MESSAGE.format(what=""), CREDENTIALS_REMOVED, digest)
        return await self._start(ctx, job, summary)

    async def _start(self, ctx: AppContext, job: DeployJob, summary: str) -> Outcome:
        digest = job.image.digest
        spec = ContainerSpec(
            name=container_name(job),
            image=job.image.pinned,
            labels=labels_for(job),
            network=network_name(job.project_id),
            port=job.port,
            publish_ip=self.publish_ip,
            memory_bytes=MEMORY_BYTES,
            nano_cpus=NANO_CPUS,
        )
        try:
            # Some engines report a container that dies at once here (and remove it), others later.
            container = await self.engine.run(spec)
        except StartFailed as exc:
            return _start_failed(summary, exc, digest)
        except EngineError as exc:
            message = f"{summary}; the container could not be started: {exc}"
            return Outcome(FAILED, message, _code(exc), digest)
        try:
            await ctx.db.run(lambda s: _record_container(s, job.deployment_id, container.id, container.url))
            await self.engine.wait_ready(
                container, health_path=job.health_path, timeout_s=self.start_timeout_s
            )
        except StartFailed as exc:
            await self._discard(container.id)
            return _start_failed(summary, exc, digest)
        except EngineError as exc:
            await self._discard(container.id)
            return Outcome(FAILED, f"{summary}; {exc}", _code(exc), digest)
        except BaseException:
            # Cancelled (guara stops) or a bug: the half-started container must not outlive this deploy.
            with anyio.CancelScope(shield=True):
                await self._discard(container.id)
            raise
        previous = await ctx.db.run(lambda s: _running(s, job.service_id, exclude=job.deployment_id))
        message = f"{summary}; running as {container.name} at {container.url}."
        return Outcome(
            RUNNING,
            message,
            digest=digest,
            container_id=container.id,
            url=container.url,
            started_at=datetime.now(UTC),
            replaced=tuple(deployment_id for deployment_id, _container in previous),
            retired_containers=tuple(container_id for _deployment, container_id in previous),
        )

    async def retire(self, container_ids: tuple[str, ...]) -> None:
        for container_id in container_ids:
            await self._discard(container_id)

    async def _discard(self, container_id: str) -> None:
        try:
            await self.engine.remove(container_id)
        except EngineError as exc:  # reconciliation removes it later; the deploy's answer stands
            logger.warning("could not remove container %s: %s", container_id[:12], exc)

    async def stop(self, service_id: uuid.UUID, container_ids: list[str]) -> None:
        """Remove the service's running containers, then by label whatever else of it is left: a
        container a newer deployment replaced may still be draining (``DeploymentRunner.drain_s``)."""
        for container_id in container_ids:
            await self.engine.remove(container_id)
        for container in await self.engine.list_containers({SERVICE_LABEL: str(service_id)}):
            await self.engine.remove(container.id)

    async def logs(self, container_id: str, *, tail: int) -> list[str]:
        return redacted_lines(await self.engine.logs(container_id, tail=min(tail, MAX_LOG_TAIL)))

    async def withdraw_credentials(self, project_id: uuid.UUID, service_name: str) -> str:
        # The engine was handed the credentials for single pulls and keeps nothing of them.
        return ""

    async def remove_service(self, service: ServiceRef) -> str:
        # By label, not by the recorded ids: a container whose deploy was cut off goes too.
        try:
            containers = await self.engine.list_containers({SERVICE_LABEL: str(service.service_id)})
            for container in containers:
                await self.engine.remove(container.id)
        except EngineError as exc:
            raise RemovalFailed(f"its containers could not be removed: {exc}") from exc
        return f"{len(containers)} container(s) removed." if containers else ""

    async def remove_project(self, project_id: uuid.UUID) -> str:
        try:
            await self.engine.remove_network(network_name(project_id))
        except EngineError as exc:
            raise RemovalFailed(f"its engine network could not be removed: {exc}") from exc
        return ""

    async def reconcile(self, ctx: AppContext) -> int:
        """Remove the containers guara started that the database no longer runs (a deploy cut off by a
        crash, a container whose deployment ended); returns how many were removed."""
        containers = await self.engine.list_containers({MANAGED_LABEL: "guara"})
        if not containers:
            return 0
        ids = {c.labels.get(DEPLOYMENT_LABEL, ""): c for c in containers}
        keep = await ctx.db.run(lambda s: _deployments_to_keep(s, list(ids)))
        removed = 0
        for deployment_id, container in ids.items():
            if deployment_id in keep:
                continue
            await self._discard(container.id)
            removed += 1
        return removed


def _start_failed(summary: str, exc: StartFailed, digest: str) -> Outcome:
    lines = redacted_lines(list(exc.logs))[-LOG_LINES_IN_MESSAGE:]
    tail = ("\nLast log lines:\n" + "\n".join(lines)) if lines else " It wrote nothing to its log."
    message = (
        f"{summary}; the container did not become ready: {exc}. The previous container keeps serving.{tail}"
    )
    return Outcome(FAILED, message, START_FAILED, digest)


def _code(exc: EngineError) -> str:
    return ENGINE_UNAVAILABLE if isinstance(exc, EngineUnavailable) else exc.code


async def _guard_refusal(ctx: AppContext, api_host: str) -> tuple[str, str] | None:
    """(code, message) when the network guard refuses the registry's address now; None when it may go."""
    host, port = split_authority(api_host)
    try:
        await GuardedBackend(ctx.registry.guard_policy()).checked_addresses(host, port or 443)
    except DestinationBlocked as exc:
        return PreflightCode.SSRF_BLOCKED.value, f"blocked by the network guard: {exc}"
    except NetGuardError as exc:
        return PreflightCode.NETWORK_ERROR.value, str(exc)
    except OSError as exc:
        return PreflightCode.NETWORK_ERROR.value, f"could not resolve {host} ({type(exc).__name__})"
    return None


# --- database steps ------------------------------------------------------------------------------------


def _mark_starting(session: Session, job: DeployJob, message: str) -> bool:
    """Record that the container starts, in one transaction with the check that the credentials the
    deploy read are still the stored ones (False, and nothing recorded, when they are not)."""
    if (
        job.fingerprint is not None
        and credentials.fingerprint(session, service_id=job.service_id) != job.fingerprint
    ):
        return False
    row = session.get(Deployment, job.deployment_id)
    if row is not None:
        row.status = STARTING
        row.message = message
        row.updated_at = utcnow()
    return True


def _record_container(session: Session, deployment_id: uuid.UUID, container_id: str, url: str) -> None:
    row = session.get(Deployment, deployment_id)
    if row is not None:
        row.container_id = container_id
        row.url = url
        row.updated_at = utcnow()


def _running(session: Session, service_id: uuid.UUID, *, exclude: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
    rows = session.execute(
        select(Deployment.id, Deployment.container_id).where(
            Deployment.service_id == service_id,
            Deployment.status == RUNNING,
            Deployment.id != exclude,
            Deployment.container_id.is_not(None),
        )
    )
    return [(deployment_id, container_id) for deployment_id, container_id in rows if container_id]


def _deployments_to_keep(session: Session, deployment_ids: list[str]) -> set[str]:
    """Of these deployments, the ones whose container belongs on the engine: running, or starting."""
    wanted = []
    for text in deployment_ids:
        try:
            wanted.append(uuid.UUID(text))
        except ValueError:
            continue
    rows = session.execute(
        select(Deployment.id).where(Deployment.id.in_(wanted), Deployment.status.in_((RUNNING, STARTING)))
    )
    return {str(deployment_id) for (deployment_id,) in rows}
