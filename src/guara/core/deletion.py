"""Deleting a service or a project.

A deleted service first loses what the runtime runs for it (containers; Kubernetes Deployment and pull
Secret), then, in one transaction, its stored credentials (the sealed envelope's row is deleted, not
flagged) while its row stays behind under a freed name, so its deployment history stays readable to
the project's owners and its audit entries keep their subject. A project is deleted only when it has
no services, or with ``cascade``, which deletes each of them that way first; its row stays too (its
audit entries hang off it), unreachable.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from guara.core import audit
from guara.core.access import mark_changed, project_of, service_of
from guara.core.accounts import Principal
from guara.core.deploy_runner import ACTIVE
from guara.core.errors import Conflict
from guara.core.roles import Action
from guara.core.runtimes import RUNNING, STOPPED, RemovalFailed, ServiceRef
from guara.store.models import Deployment, RegistryCredential, Service, utcnow

if TYPE_CHECKING:
    from guara.context import AppContext

# A deleted service's name: never a valid service name (those match SERVICE_NAME), so the freed name
# can be used again at once.
DELETED_NAME_PREFIX = "~deleted-"


@dataclass(frozen=True)
class Deleted:
    """What a deletion did, for people: the runtime's notes."""

    message: str


async def delete_service(ctx: AppContext, principal: Principal, *, service_id: uuid.UUID) -> Deleted:
    """Delete a service (owners): stop what runs, destroy its credentials, keep its history."""

    def check(session: Session) -> ServiceRef:
        service = service_of(
            session, principal=principal, service_id=service_id, action=Action.SERVICE_DELETE
        )
        _no_deploy_running(session, service)
        return ServiceRef(service.project_id, service.id, service.name)

    ref = await ctx.db.run(check)
    note = await _remove_from_runtime(ctx, ref)

    def work(session: Session) -> None:
        service = service_of(
            session, principal=principal, service_id=service_id, action=Action.SERVICE_DELETE
        )
        _tombstone(session, principal, service)

    await ctx.db.run(work)
    return Deleted(note)


async def delete_project(
    ctx: AppContext, principal: Principal, *, project_id: uuid.UUID, cascade: bool = False
) -> Deleted:
    """Delete a project (owners): 409 ``project_not_empty`` while it has services, unless ``cascade``."""

    def check(session: Session) -> list[ServiceRef]:
        project_of(session, principal=principal, project_id=project_id, action=Action.PROJECT_DELETE)
        services = _live_services(session, project_id, cascade=cascade)
        for service in services:
            _no_deploy_running(session, service)
        return [ServiceRef(s.project_id, s.id, s.name) for s in services]

    refs = await ctx.db.run(check)
    notes = [await _remove_from_runtime(ctx, ref) for ref in refs]
    try:
        notes.append(await ctx.deployments.runtime.remove_project(project_id))
    except RemovalFailed as exc:
        raise Conflict(
            f"the project was not deleted: {exc}; try again when the runtime answers", code="runtime_failed"
        ) from None

    def work(session: Session) -> None:
        project, _role = project_of(
            session, principal=principal, project_id=project_id, action=Action.PROJECT_DELETE
        )
        services = _live_services(session, project_id, cascade=cascade)
        if {s.id for s in services} != {ref.service_id for ref in refs}:
            raise Conflict("the project's services changed meanwhile; try again", code="conflict")
        names = tuple(sorted(service.name for service in services))
        for service in services:
            _tombstone(session, principal, service)
        # Nothing sealed under the project's key may outlive it.
        session.execute(delete(RegistryCredential).where(RegistryCredential.project_id == project_id))
        project.deleted_at = utcnow()
        target = audit.Target("project", str(project.id), project.name)
        event = audit.ProjectDeleted(names)
        audit.record_in_project(
            session, principal=principal, project_id=project.id, target=target, event=event
        )

    await ctx.db.run(work)
    return Deleted(" ".join(note for note in notes if note))


def _live_services(session: Session, project_id: uuid.UUID, *, cascade: bool) -> list[Service]:
    services = list(
        session.scalars(select(Service).where(Service.project_id == project_id, Service.deleted_at.is_(None)))
    )
    if services and not cascade:
        raise Conflict(
            f"the project still has {len(services)} service(s): delete them first, or delete with cascade",
            code="project_not_empty",
        )
    return services


def _no_deploy_running(session: Session, service: Service) -> None:
    if session.scalar(
        select(Deployment.id).where(Deployment.service_id == service.id, Deployment.status.in_(ACTIVE))
    ):
        raise Conflict(
            f"a deployment of {service.name} is running; wait for it to finish", code="deploy_in_progress"
        )


async def _remove_from_runtime(ctx: AppContext, ref: ServiceRef) -> str:
    try:
        return await ctx.deployments.runtime.remove_service(ref)
    except RemovalFailed as exc:
        raise Conflict(
            f"{ref.name} was not deleted: {exc}; try again when the runtime answers", code="runtime_failed"
        ) from None


def _tombstone(session: Session, principal: Principal, service: Service) -> None:
    """In the caller's transaction: destroy the credentials, end what ran, audit, free the name."""
    # Writing the row first waits for a deploy being started on it (it holds the row) and makes the
    # check below see that deploy; a deploy starting later finds the service deleted.
    mark_changed(session, service)
    _no_deploy_running(session, service)
    stored = session.get(RegistryCredential, service.id)
    session.execute(delete(RegistryCredential).where(RegistryCredential.service_id == service.id))
    deployments = session.scalar(select(func.count()).where(Deployment.service_id == service.id)) or 0
    session.execute(
        update(Deployment)
        .where(Deployment.service_id == service.id, Deployment.status == RUNNING)
        .values(status=STOPPED, url=None, updated_at=utcnow(), message="Stopped: the service was deleted.")
    )
    event = audit.ServiceDeleted(service.image, stored.registry_host if stored else None, deployments)
    audit.record(session, principal=principal, service=service, event=event)
    service.name = DELETED_NAME_PREFIX + service.id.hex
    service.deleted_at = utcnow()
    mark_changed(session, service)
