"""Services built from a Docker image reference: create (optionally with verified credentials), read,
list, and change how they deploy (image, platform, port, health path)."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from guara.core import audit, credential_health, credentials, validation
from guara.core.access import mark_changed, project_of, service_of
from guara.core.accounts import Principal
from guara.core.credentials import CredentialsChange, CredentialsView, PreparedSave
from guara.core.errors import Conflict, InvalidInput
from guara.core.roles import Action
from guara.core.runtimes import RUNNING
from guara.deploy import DEFAULT_PLATFORM
from guara.registry import same_registry
from guara.store import UniqueViolation, flush
from guara.store.models import CredentialHealth, Deployment, RegistryCredential, Service

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
    port: int
    health_path: str | None
    registry_credentials: CredentialsView | None
    # The published address of the running container (a container engine), else None.
    url: str | None
    created_at: datetime
    updated_at: datetime
    # The tag points to another digest than the deployed one (seen by the last credentials check).
    tag_moved: credential_health.TagMoved | None = None
    # Deploy by itself when the tag moves.
    auto_deploy_on_tag_move: bool = False


class Keep(enum.Enum):
    """A field left out of a change: the stored value stays."""

    KEEP = "keep"


KEEP = Keep.KEEP
# Services per page of the project page: the dashboard stays fast with ten thousand of them.
SERVICES_PAGE = 50


@dataclass(frozen=True)
class ServiceChange:
    """What to change of a service's deploy settings; ``KEEP`` leaves a field as it is."""

    image: str | Keep = KEEP
    platform: str | Keep = KEEP
    port: int | Keep = KEEP
    health_path: str | Keep | None = KEEP
    auto_deploy_on_tag_move: bool | Keep = KEEP


def view_of(
    service: Service,
    stored: CredentialsView | None,
    url: str | None,
    health: CredentialHealth | None = None,
    deployed: str | None = None,
) -> ServiceView:
    return ServiceView(
        id=service.id,
        project_id=service.project_id,
        name=service.name,
        build_method=service.build_method,
        image=service.image,
        platform=service.platform,
        port=service.port,
        health_path=service.health_path,
        registry_credentials=stored,
        url=url,
        created_at=service.created_at,
        updated_at=service.updated_at,
        tag_moved=credential_health.tag_moved_of(service.image, health, deployed) if stored else None,
        auto_deploy_on_tag_move=health.auto_deploy if health is not None else False,
    )


def _running_urls(
    session: Session, *, project_id: uuid.UUID, service_ids: Collection[uuid.UUID] | None
) -> dict[uuid.UUID, str]:
    query = select(Deployment.service_id, Deployment.url).where(
        Deployment.project_id == project_id, Deployment.status == RUNNING, Deployment.url.is_not(None)
    )
    if service_ids is not None:
        query = query.where(Deployment.service_id.in_(service_ids))
    return {service_id: url for service_id, url in session.execute(query) if url}


def _view(session: Session, service: Service) -> ServiceView:
    row = session.get(RegistryCredential, service.id)
    url = session.scalar(
        select(Deployment.url)
        .where(Deployment.service_id == service.id, Deployment.status == RUNNING)
        .order_by(Deployment.created_at.desc())
        .limit(1)
    )
    health = session.get(CredentialHealth, service.id)
    deployed = credential_health.deployed_digest(session, service.id)
    return view_of(service, credentials.view_of(row, health) if row else None, url, health, deployed)


async def create_service(
    ctx: AppContext,
    principal: Principal,
    *,
    project_id: uuid.UUID,
    name: str,
    image: str,
    platform: str = DEFAULT_PLATFORM,
    port: int = validation.DEFAULT_PORT,
    health_path: str | None = None,
    registry_credentials: CredentialsChange | None = None,
    skip_verification: bool = False,
) -> ServiceView:
    """Create a service, with credentials verified by a preflight (or overridden) when given; the
    service, its credentials and the ``service.create`` entry land in one transaction."""
    # A stranger's project is NotFound before anything about the input is said.
    await ctx.db.run(
        lambda session: project_of(
            session, principal=principal, project_id=project_id, action=Action.SERVICE_CREATE
        )
    )
    reference = validation.image_reference(image)
    validation.service_name(name)
    chosen_platform = validation.platform(platform)
    chosen_port = validation.port(port)
    chosen_health_path = validation.health_path(health_path)
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
        project, _role = project_of(
            session, principal=principal, project_id=project_id, action=Action.SERVICE_CREATE
        )
        if session.scalar(select(Service.id).where(Service.project_id == project.id, Service.name == name)):
            raise Conflict(f"a service named {name} already exists in this project", code="name_taken")
        service = Service(
            project_id=project.id,
            name=name,
            build_method="docker_image",
            image=str(reference),
            platform=chosen_platform,
            port=chosen_port,
            health_path=chosen_health_path,
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


async def get_service(
    ctx: AppContext, principal: Principal, *, service_id: uuid.UUID, action: Action = Action.SERVICE_READ
) -> ServiceView:
    """The service; ``action``: only when the caller's role allows it (a page leading to it)."""

    def work(session: Session) -> ServiceView:
        return _view(session, service_of(session, principal=principal, service_id=service_id, action=action))

    return await ctx.db.run(work)


@dataclass(frozen=True)
class ServicesPage:
    """Services by name after ``after``; ``next_after`` is the name to continue from when more follow."""

    services: list[ServiceView]
    total: int
    next_after: str | None


async def list_services(ctx: AppContext, principal: Principal, *, project_id: uuid.UUID) -> list[ServiceView]:
    """The project's services by name, with their masked credentials (three queries, not one a row)."""

    def work(session: Session) -> list[ServiceView]:
        project_of(session, principal=principal, project_id=project_id, action=Action.SERVICE_READ)
        return _views_by_name(session, project_id=project_id, after=None, limit=None)

    return await ctx.db.run(work)


async def services_page(
    ctx: AppContext,
    principal: Principal,
    *,
    project_id: uuid.UUID,
    after: str | None = None,
    limit: int = SERVICES_PAGE,
) -> ServicesPage:
    """One page of the project's services by name (keyset: as fast on the last page as on the first)."""

    def work(session: Session) -> ServicesPage:
        project_of(session, principal=principal, project_id=project_id, action=Action.SERVICE_READ)
        views = _views_by_name(session, project_id=project_id, after=after, limit=limit + 1)
        live = (Service.project_id == project_id, Service.deleted_at.is_(None))
        total = session.scalar(select(func.count()).where(*live)) or 0
        more = len(views) > limit
        return ServicesPage(views[:limit], int(total), views[limit - 1].name if more else None)

    return await ctx.db.run(work)


def _views_by_name(
    session: Session, *, project_id: uuid.UUID, after: str | None, limit: int | None
) -> list[ServiceView]:
    query = select(Service).where(Service.project_id == project_id, Service.deleted_at.is_(None))
    query = query.order_by(Service.name)
    if after is not None:
        query = query.where(Service.name > after)
    rows = list(session.scalars(query.limit(limit)))
    # A page asks for its own services' rows; the whole list, for the project's.
    ids = None if limit is None else [service.id for service in rows]
    health_rows = select(CredentialHealth).where(CredentialHealth.project_id == project_id)
    if ids is not None:
        health_rows = health_rows.where(CredentialHealth.service_id.in_(ids))
    health = {row.service_id: row for row in session.scalars(health_rows)}
    stored = credentials.views_in_project(session, project_id=project_id, service_ids=ids, health=health)
    urls = _running_urls(session, project_id=project_id, service_ids=ids)
    deployed = credential_health.deployed_digests(session, project_id, service_ids=ids)
    return [
        view_of(
            service,
            stored.get(service.id),
            urls.get(service.id),
            health.get(service.id),
            deployed.get(service.id),
        )
        for service in rows
    ]


async def update_service(
    ctx: AppContext, principal: Principal, *, service_id: uuid.UUID, change: ServiceChange
) -> ServiceView:
    """Change how the service deploys (the next deploy uses it); audited as ``service.update``.

    A new image must be on the registry of the stored credentials (they are only ever sent there):
    move registries by changing or removing the credentials first."""

    def work(session: Session) -> ServiceView:
        service = service_of(
            session, principal=principal, service_id=service_id, action=Action.SERVICE_UPDATE
        )
        wanted: dict[str, object] = {}
        if not isinstance(change.image, Keep):
            reference = validation.image_reference(change.image)
            stored = session.get(RegistryCredential, service.id)
            if stored is not None and not same_registry(stored.registry_host, reference):
                raise InvalidInput(
                    f"the image is on {reference.registry}, but the service's registry credentials are for "
                    f"{stored.registry_host}: change or remove the credentials first",
                    code="registry_mismatch",
                    field="image",
                )
            wanted["image"] = str(reference)
        if not isinstance(change.platform, Keep):
            wanted["platform"] = validation.platform(change.platform)
        if not isinstance(change.port, Keep):
            wanted["port"] = validation.port(change.port)
        if not isinstance(change.health_path, Keep):
            wanted["health_path"] = validation.health_path(change.health_path)
        changes = tuple(
            (name, _text(getattr(service, name)), _text(value))
            for name, value in wanted.items()
            if getattr(service, name) != value
        )
        if not isinstance(change.auto_deploy_on_tag_move, Keep):
            health = credential_health.row_for(session, service)
            if health.auto_deploy != change.auto_deploy_on_tag_move:
                before = "on" if health.auto_deploy else "off"
                health.auto_deploy = change.auto_deploy_on_tag_move
                changes += (("auto_deploy_on_tag_move", before, "on" if health.auto_deploy else "off"),)
        if changes:
            for name, _old, _new in changes:
                if name in wanted:
                    setattr(service, name, wanted[name])
            mark_changed(session, service)
            event: audit.AuditEvent = audit.SettingsChanged(changes)
            if [name for name, _old, _new in changes] == ["platform"]:
                event = audit.PlatformChanged(platform=changes[0][2] or "", previous=changes[0][1] or "")
            audit.record(session, principal=principal, service=service, event=event)
        return _view(session, service)

    return await ctx.db.run(work)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
