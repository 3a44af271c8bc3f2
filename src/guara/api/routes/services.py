"""Services of a project; credentials are shown masked, never returned."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status
from sqlalchemy.orm import Session

from guara.api.deps import CurrentUser, PlatformDep, SessionDep
from guara.api.schemas import CredentialsPublic, ServiceCreate, ServicePublic, ServiceUpdate
from guara.core import credentials, services
from guara.store.models import Service

router = APIRouter(tags=["services"])


def credentials_public(view: credentials.CredentialsView | None) -> CredentialsPublic | None:
    return CredentialsPublic.model_validate(view, from_attributes=True) if view else None


def service_public(session: Session, service: Service) -> ServicePublic:
    return service_with(service, credentials.get_view(session, service_id=service.id))


def service_with(service: Service, view: credentials.CredentialsView | None) -> ServicePublic:
    return ServicePublic(
        id=service.id,
        project_id=service.project_id,
        name=service.name,
        build_method=service.build_method,
        image=service.image,
        platform=service.platform,
        registry_credentials=credentials_public(view),
        created_at=service.created_at,
        updated_at=service.updated_at,
    )


@router.post("/projects/{project_id}/services", status_code=status.HTTP_201_CREATED)
async def create_service(
    project_id: uuid.UUID, body: ServiceCreate, user: CurrentUser, platform: PlatformDep
) -> ServicePublic:
    given = body.registry_credentials
    service = await credentials.create_service(
        platform,
        user,
        project_id=project_id,
        name=body.name,
        image=body.image,
        credentials=credentials.CredentialsInput(given.registry, given.username, given.password)
        if given
        else None,
        skip_verification=body.skip_verification,
        platform_name=body.platform,
    )
    return await platform.in_session(lambda session: service_public(session, service))


@router.get("/projects/{project_id}/services")
def list_services(project_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> list[ServicePublic]:
    listed = services.list_services(session, principal=user, project_id=project_id)
    views = credentials.views_in_project(session, project_id=project_id)  # one query, not one a row
    return [service_with(service, views.get(service.id)) for service in listed]


@router.get("/services/{service_id}")
def get_service(service_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> ServicePublic:
    return service_public(session, services.get_service(session, principal=user, service_id=service_id))


@router.patch("/services/{service_id}")
def update_service(
    service_id: uuid.UUID, body: ServiceUpdate, user: CurrentUser, session: SessionDep
) -> ServicePublic:
    """Change what deploys pick from a multi-platform image (``linux/amd64`` by default)."""
    service = services.set_platform(session, principal=user, service_id=service_id, platform=body.platform)
    return service_public(session, service)
