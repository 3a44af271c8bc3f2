"""Services built from a Docker image reference."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from guara.core import audit, validation
from guara.core.accounts import Principal
from guara.core.errors import Conflict, NotFound
from guara.core.projects import get_project
from guara.deploy import DEFAULT_PLATFORM
from guara.store.db import UniqueViolation, flush_unique
from guara.store.models import Membership, Service, utcnow


def create_service(
    session: Session,
    *,
    principal: Principal,
    project_id: uuid.UUID,
    name: str,
    image: str,
    platform: str = DEFAULT_PLATFORM,
    audit_details: dict[str, Any] | None = None,
) -> Service:
    """Insert a service and its ``service.create`` audit entry in the caller's transaction."""
    project = get_project(session, principal=principal, project_id=project_id)
    reference = validation.image_reference(image)
    service = Service(
        project_id=project.id,
        name=validation.service_name(name),
        build_method="docker_image",
        image=str(reference),
        platform=validation.platform(platform),
    )
    if session.scalar(select(Service.id).where(Service.project_id == project.id, Service.name == name)):
        raise Conflict(f"a service named {name} already exists in this project", code="name_taken")
    session.add(service)
    try:
        flush_unique(session)
    except UniqueViolation:
        raise Conflict(f"a service named {name} already exists in this project", code="name_taken") from None
    audit.record(
        session,
        principal=principal,
        service=service,
        action="service.create",
        details={"image": service.image, "platform": service.platform, **(audit_details or {})},
    )
    return service


def set_platform(session: Session, *, principal: Principal, service_id: uuid.UUID, platform: str) -> Service:
    """Choose which platform deploys pick from a multi-platform image; audited as ``service.update``."""
    service = get_service(session, principal=principal, service_id=service_id)
    chosen = validation.platform(platform)
    if chosen != service.platform:
        previous = service.platform
        service.platform = chosen
        service.version += 1
        service.updated_at = utcnow()
        audit.record(
            session,
            principal=principal,
            service=service,
            action="service.update",
            details={"platform": chosen, "previous_platform": previous},
        )
    return service


def get_service(session: Session, *, principal: Principal, service_id: uuid.UUID) -> Service:
    service = session.scalar(
        select(Service)
        .join(Membership, Membership.project_id == Service.project_id)
        .where(Service.id == service_id, Membership.user_id == principal.user_id)
    )
    if service is None:
        raise NotFound("service not found")
    return service


def list_services(session: Session, *, principal: Principal, project_id: uuid.UUID) -> list[Service]:
    get_project(session, principal=principal, project_id=project_id)
    return list(
        session.scalars(select(Service).where(Service.project_id == project_id).order_by(Service.name))
    )
