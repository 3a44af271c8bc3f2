"""Services built from a Docker image reference: create (optionally with verified credentials), read,
list, and choose the platform deploys pick."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from guara.core import audit, credentials, validation
from guara.core.access import mark_changed, project_of, service_of
from guara.core.accounts import Principal
from guara.core.credentials import CredentialsChange, CredentialsView, PreparedSave
from guara.core.errors import Conflict
from guara.deploy import DEFAULT_PLATFORM
from guara.store import UniqueViolation, flush
from guara.store.models import RegistryCredential, Service

if TYPE_CHECKING:
    from guara.context import AppContext


@dataclass(frozen=True)
class ServiceView:
    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    build_method: str
    image: str
    platform: str
    registry_credentials: CredentialsView | None
    created_at: datetime
    updated_at: datetime


def view_of(service: Service, stored: CredentialsView | None) -> ServiceView:
    return ServiceView(
        id=service.id,
        project_id=service.project_id,
        name=service.name,
        build_method=service.build_method,
        image=service.image,
        platform=service.platform,
        registry_credentials=stored,
        created_at=service.created_at,
        updated_at=service.updated_at,
    )


def _view(session: Session, service: Service) -> ServiceView:
    row = session.get(RegistryCredential, service.id)
    return view_of(service, credentials.view_of(row) if row else None)


async def create_service(
    ctx: AppContext,
    principal: Principal,
    *,
    project_id: uuid.UUID,
    name: str,
    image: str,
    platform: str = DEFAULT_PLATFORM,
    registry_credentials: CredentialsChange | None = None,
    skip_verification: bool = False,
) -> ServiceView:
    """Create a service, with credentials verified by a preflight (or overridden) when given; the
    service, its credentials and the ``service.create`` entry land in one transaction."""
    # A stranger's project is NotFound before anything about the input is said.
    await ctx.db.run(lambda session: project_of(session, principal=principal, project_id=project_id))
    reference = validation.image_reference(image)
    validation.service_name(name)
    chosen_platform = validation.platform(platform)
    prepared: PreparedSave | None = None
    verification: audit.Verification | None = None
    if registry_credentials is not None:
        prepared = credentials.prepare_new(
            ctx, image_registry=reference.registry, change=registry_credentials
        )
        verification = await credentials.verify(
            ctx, principal, image=str(reference), prepared=prepared, skip_verification=skip_verification
        )

    def create(session: Session) -> ServiceView:
        project, _role = project_of(session, principal=principal, project_id=project_id)
        if session.scalar(select(Service.id).where(Service.project_id == project.id, Service.name == name)):
            raise Conflict(f"a service named {name} already exists in this project", code="name_taken")
        service = Service(
            project_id=project.id,
            name=name,
            build_method="docker_image",
            image=str(reference),
            platform=chosen_platform,
        )
        session.add(service)
        try:
            flush(session)
        except UniqueViolation:
            raise Conflict(
                f"a service named {name} already exists in this project", code="name_taken"
            ) from None
        event = audit.ServiceCreated(image=service.image, platform=service.platform)
        if prepared is not None and verification is not None:
            credentials.write(ctx, session, service=service, prepared=prepared, verification=verification)
            event = audit.ServiceCreated(service.image, service.platform, prepared.registry, verification)
        audit.record(session, principal=principal, service=service, event=event)
        return _view(session, service)

    return await ctx.db.run(create)


async def get_service(ctx: AppContext, principal: Principal, *, service_id: uuid.UUID) -> ServiceView:
    def work(session: Session) -> ServiceView:
        return _view(session, service_of(session, principal=principal, service_id=service_id))

    return await ctx.db.run(work)


async def list_services(ctx: AppContext, principal: Principal, *, project_id: uuid.UUID) -> list[ServiceView]:
    """The project's services by name, with their masked credentials (two queries, not one a row)."""

    def work(session: Session) -> list[ServiceView]:
        project_of(session, principal=principal, project_id=project_id)
        rows = session.scalars(select(Service).where(Service.project_id == project_id).order_by(Service.name))
        stored = credentials.views_in_project(session, project_id=project_id)
        return [view_of(service, stored.get(service.id)) for service in rows]

    return await ctx.db.run(work)


async def set_platform(
    ctx: AppContext, principal: Principal, *, service_id: uuid.UUID, platform: str
) -> ServiceView:
    """Choose which platform deploys pick from a multi-platform image; audited as ``service.update``."""

    def work(session: Session) -> ServiceView:
        service = service_of(session, principal=principal, service_id=service_id)
        chosen = validation.platform(platform)
        if chosen != service.platform:
            event = audit.PlatformChanged(platform=chosen, previous=service.platform)
            service.platform = chosen
            mark_changed(session, service)
            audit.record(session, principal=principal, service=service, event=event)
        return _view(session, service)

    return await ctx.db.run(work)
