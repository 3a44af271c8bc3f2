"""Deployments of a service: start one (it runs in the background), list them, read one.

A deployment goes ``pending`` → ``resolving`` → ``succeeded`` | ``failed``. ``start_deployment``
authorises the caller, records a ``pending`` row (image and platform copied from the service) and hands
it to the context's ``DeploymentRunner`` (``guara.core.deploy_runner``), which does the rest; the caller
gets the row at once (the API answers 202).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from guara.core import audit, credentials, validation
from guara.core.access import service_of
from guara.core.accounts import Principal
from guara.core.deploy_runner import ACTIVE
from guara.core.engine_runtime import EngineRuntime
from guara.core.errors import Conflict, InvalidInput, NotFound, RateLimited
from guara.core.preflights import count_preflight
from guara.core.roles import Action
from guara.core.runtimes import PENDING, RUNNING, STOPPED
from guara.store import UniqueViolation, flush
from guara.store.models import Deployment, RegistryCredential, Service, utcnow

if TYPE_CHECKING:
    from guara.context import AppContext

DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100
DEFAULT_LOG_TAIL = 100
MAX_LOG_TAIL = 1000


@dataclass(frozen=True)
class DeploymentView:
    id: uuid.UUID
    service_id: uuid.UUID
    status: str
    image: str
    platform: str
    digest: str | None
    code: str | None
    message: str
    with_credentials: bool
    manifests: list[dict[str, Any]] | None
    # On a container engine: where the container answers, and since when (while it runs).
    url: str | None
    started_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def view_of(row: Deployment) -> DeploymentView:
    return DeploymentView(
        id=row.id,
        service_id=row.service_id,
        status=row.status,
        image=row.image,
        platform=row.platform,
        digest=row.digest,
        code=row.code,
        message=row.message,
        with_credentials=row.with_credentials,
        manifests=row.manifests,
        url=row.url,
        started_at=row.started_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _history_of(session: Session, principal: Principal, service_id: uuid.UUID) -> Service:
    """A service whose deployments the caller may read: a live one, or (for owners) a deleted one."""
    try:
        return service_of(session, principal=principal, service_id=service_id, action=Action.DEPLOYMENTS_READ)
    except NotFound:
        return service_of(
            session,
            principal=principal,
            service_id=service_id,
            action=Action.DELETED_HISTORY_READ,
            deleted=True,
        )


async def list_deployments(
    ctx: AppContext, principal: Principal, *, service_id: uuid.UUID, limit: int = DEFAULT_LIST_LIMIT
) -> list[DeploymentView]:
    """The service's deployments, newest first. NotFound for a service the caller cannot see."""

    def work(session: Session) -> list[DeploymentView]:
        service = _history_of(session, principal, service_id)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}", field="limit")
        rows = session.scalars(
            select(Deployment)
            .where(Deployment.service_id == service.id)
            .order_by(Deployment.created_at.desc())
            .limit(limit)
        )
        return [view_of(row) for row in rows]

    return await ctx.db.run(work)


async def get_deployment(
    ctx: AppContext, principal: Principal, *, service_id: uuid.UUID, deployment_id: uuid.UUID
) -> DeploymentView:
    """One deployment of a service the caller can see; NotFound otherwise (also for another service's)."""

    def work(session: Session) -> DeploymentView:
        service = _history_of(session, principal, service_id)
        row = session.scalar(
            select(Deployment).where(Deployment.id == deployment_id, Deployment.service_id == service.id)
        )
        if row is None:
            raise NotFound("deployment not found")
        return view_of(row)

    return await ctx.db.run(work)


async def start_deployment(ctx: AppContext, principal: Principal, *, service_id: uuid.UUID) -> DeploymentView:
    """Record a pending deployment of the service and start it in the background; returns at once."""
    runner = ctx.deployments
    if runner.closing:
        raise Conflict("guara is shutting down; deploy again in a moment", code="shutting_down")

    def unverified(session: Session) -> bool:
        service = service_of(session, principal=principal, service_id=service_id, action=Action.DEPLOY)
        stored = session.get(RegistryCredential, service.id)
        return stored is not None and stored.verification != "passed"

    if await ctx.db.run(unverified):
        # Credentials saved without verifying are first tried here: that is a preflight, and counts as one.
        await count_preflight(ctx, principal)
    retry_after = await ctx.limiters.deploy.hit_async(str(principal.user_id))
    if retry_after is not None:
        # Deploys reach registries too: without a bound, save-without-verifying plus deploy would be
        # an unlimited credential oracle around the Test Connection limit.
        raise RateLimited(f"Too many deploys; try again in {retry_after} seconds.", retry_after=retry_after)

    def create(session: Session) -> DeploymentView:
        # Held until the new deployment is committed: a deletion racing this one waits, then sees it.
        service = service_of(
            session, principal=principal, service_id=service_id, action=Action.DEPLOY, share_lock=True
        )
        busy = Conflict(
            "a deployment of this service is already running; wait for it to finish",
            code="deploy_in_progress",
        )
        running = session.scalar(
            select(Deployment.id).where(Deployment.service_id == service.id, Deployment.status.in_(ACTIVE))
        )
        if running is not None:
            # One at a time per service: queues stay bounded, and a deploy always starts from fresh values.
            raise busy
        validation.image_reference(service.image)
        validation.platform(service.platform)
        with_credentials = session.get(RegistryCredential, service.id) is not None
        row = Deployment(
            service_id=service.id,
            project_id=service.project_id,
            status=PENDING,
            image=service.image,
            platform=service.platform,
            with_credentials=with_credentials,
            message="Queued: the image will be resolved "
            + ("with the stored registry credentials." if with_credentials else "anonymously."),
            created_by=principal.user_id,
            owner=runner.owner,
            heartbeat_at=utcnow(),
        )
        session.add(row)
        try:
            flush(session)
        except UniqueViolation:  # another process started one between the check and the insert
            raise busy from None
        return view_of(row)

    view = await ctx.db.run(create)
    runner.spawn(ctx, view.id, principal)
    return view


# --- the running container (container engine runtime) ------------------------------------------------


@dataclass(frozen=True)
class ServiceLogs:
    deployment_id: uuid.UUID
    lines: list[str]


def _engine(ctx: AppContext) -> EngineRuntime:
    runtime = ctx.deployments.runtime
    if not isinstance(runtime, EngineRuntime):
        raise Conflict(
            f"this guara runs deploys as '{runtime.name}': "
            "services run (and stop) only on a container engine",
            code="not_supported",
        )
    return runtime


async def service_logs(
    ctx: AppContext, principal: Principal, *, service_id: uuid.UUID, tail: int = DEFAULT_LOG_TAIL
) -> ServiceLogs:
    """The last lines of the running container's log (stdout and stderr), bounded and redacted."""
    if not 1 <= tail <= MAX_LOG_TAIL:
        raise InvalidInput(f"tail must be between 1 and {MAX_LOG_TAIL}", field="tail")

    def work(session: Session) -> tuple[uuid.UUID, str]:
        service = service_of(session, principal=principal, service_id=service_id, action=Action.LOGS_READ)
        # The service's own password, if its container prints it, is scrubbed like in any log line.
        credentials.open_stored_quietly(ctx, session, service_id=service.id)
        running = _running_container(session, service.id)
        _engine(ctx)  # after the access check: a stranger learns nothing about this guara
        if running is None:
            raise Conflict("the service has no running container (deploy it first)", code="not_running")
        return running

    deployment_id, container_id = await ctx.db.run(work)
    return ServiceLogs(deployment_id, await _engine(ctx).logs(container_id, tail=tail))


async def stop_service(ctx: AppContext, principal: Principal, *, service_id: uuid.UUID) -> int:
    """Stop the service: remove its containers; its deployments end ``stopped``. How many were removed."""

    def running(session: Session) -> list[tuple[uuid.UUID, str]]:
        service = service_of(session, principal=principal, service_id=service_id, action=Action.SERVICE_STOP)
        _engine(ctx)  # after the access check: a stranger learns nothing about this guara
        if session.scalar(
            select(Deployment.id).where(Deployment.service_id == service.id, Deployment.status.in_(ACTIVE))
        ):
            raise Conflict(
                "a deployment of this service is running; wait for it to finish", code="deploy_in_progress"
            )
        rows = session.execute(
            select(Deployment.id, Deployment.container_id).where(
                Deployment.service_id == service.id, Deployment.status == RUNNING
            )
        )
        return [(deployment_id, container_id or "") for deployment_id, container_id in rows]

    stopped = await ctx.db.run(running)
    await _engine(ctx).stop(service_id, [container_id for _id, container_id in stopped if container_id])

    def record(session: Session) -> None:
        service = service_of(session, principal=principal, service_id=service_id, action=Action.SERVICE_STOP)
        ids = [deployment_id for deployment_id, _container in stopped]
        if ids:
            session.execute(
                update(Deployment)
                .where(Deployment.id.in_(ids))
                .values(
                    status=STOPPED,
                    url=None,
                    updated_at=utcnow(),
                    message="Stopped: the container was removed.",
                )
            )
        event = audit.Stopped(tuple(str(i) for i in ids))
        audit.record(session, principal=principal, service=service, event=event)

    await ctx.db.run(record)
    return len(stopped)


def _running_container(session: Session, service_id: uuid.UUID) -> tuple[uuid.UUID, str] | None:
    row = session.execute(
        select(Deployment.id, Deployment.container_id)
        .where(Deployment.service_id == service_id, Deployment.status == RUNNING)
        .order_by(Deployment.created_at.desc())
        .limit(1)
    ).first()
    if row is None or not row.container_id:
        return None
    return row.id, row.container_id
