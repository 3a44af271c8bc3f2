"""Tenancy in one place: what a principal may load (a stranger's project or service is NotFound), and
the optimistic lock every change of a service row goes through.

Keyword-only helpers over the caller's session; every use case reaches projects and services
through them.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from guara.core.accounts import Principal
from guara.core.errors import Conflict, NotFound
from guara.store import ConcurrentUpdate, flush
from guara.store.models import Membership, Project, Service, utcnow


def project_of(session: Session, *, principal: Principal, project_id: uuid.UUID) -> tuple[Project, str]:
    """The project and the principal's role in it."""
    row = session.execute(
        select(Project, Membership.role)
        .join(Membership, Membership.project_id == Project.id)
        .where(Project.id == project_id, Membership.user_id == principal.user_id)
    ).first()
    if row is None:
        raise NotFound("project not found")
    return row[0], row[1]


def service_of(session: Session, *, principal: Principal, service_id: uuid.UUID) -> Service:
    service = session.scalar(
        select(Service)
        .join(Membership, Membership.project_id == Service.project_id)
        .where(Service.id == service_id, Membership.user_id == principal.user_id)
    )
    if service is None:
        raise NotFound("service not found")
    return service


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
