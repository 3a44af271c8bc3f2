"""Tenancy and roles in one place: what a principal may load (a stranger's project or service is
NotFound, and so is a deleted one), what its role lets it do there (``guara.core.roles``: else
Forbidden), and the optimistic lock every change of a service row goes through.

Keyword-only helpers over the caller's session; every use case reaches projects and services
through them.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from guara.core.accounts import Principal
from guara.core.errors import Conflict, Forbidden, NotFound
from guara.core.roles import MINIMUM_ROLE, Action, Role, allows
from guara.store import ConcurrentUpdate, flush
from guara.store.models import Membership, Project, Service, utcnow


def project_of(
    session: Session, *, principal: Principal, project_id: uuid.UUID, action: Action
) -> tuple[Project, Role]:
    """The project and the principal's role in it, when that role allows ``action``."""
    row = session.execute(
        select(Project, Membership.role)
        .join(Membership, Membership.project_id == Project.id)
        .where(
            Project.id == project_id,
            Project.deleted_at.is_(None),
            Membership.user_id == principal.user_id,
        )
    ).first()
    if row is None:
        raise NotFound("project not found")
    project, role = row[0], row[1]
    require(role, action)
    return project, Role(role)


def service_of(
    session: Session,
    *,
    principal: Principal,
    service_id: uuid.UUID,
    action: Action,
    deleted: bool = False,
    share_lock: bool = False,
) -> Service:
    """A live service of one of the principal's projects, when the principal's role there allows
    ``action``; with ``deleted``, a deleted service instead (for its history). ``share_lock`` holds
    the row (PostgreSQL: FOR SHARE) until the transaction ends, so a deletion waits for it and then
    sees what it wrote (SQLite runs one writer at a time anyway)."""
    query = (
        select(Service, Membership.role)
        .join(Project, Project.id == Service.project_id)
        .join(Membership, Membership.project_id == Service.project_id)
        .where(
            Service.id == service_id,
            Service.deleted_at.is_not(None) if deleted else Service.deleted_at.is_(None),
            Project.deleted_at.is_(None),
            Membership.user_id == principal.user_id,
        )
    )
    if share_lock:
        query = query.with_for_update(read=True, of=Service)
    row = session.execute(query).first()
    if row is None:
        raise NotFound("service not found")
    require(row[1], action)
    service: Service = row[0]
    return service


def require(role: str, action: Action) -> None:
    """Forbidden unless ``role`` allows ``action``."""
    if not allows(role, action):
        raise Forbidden(
            f"your role in this project ({role}) does not allow this; "
            f"it needs {MINIMUM_ROLE[action].value} or above",
        )


def mark_changed(session: Session, service: Service) -> None:
    """Record that ``service`` changed in this transaction. Its version counter makes this a Conflict
    when another save changed the service since ``service`` was read (possibly in an earlier
    transaction, before a preflight ran)."""
    session.add(service)
    service.updated_at = utcnow()
    try:
        flush(session)
    except ConcurrentUpdate:
        raise Conflict(
            "the service was changed by another save while this one ran; reload and try again",
            code="conflict",
        ) from None
