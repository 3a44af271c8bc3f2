"""Services of a project; credentials are shown masked, never returned."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from guara.api.deps import CurrentUser
from guara.api.schemas import ServiceCreate, ServicePublic, ServiceUpdate, error_responses
from guara.core import deletion, services
from guara.http.deps import ContextDep

router = APIRouter(tags=["services"], responses=error_responses(401, 403, 404, 422))


@router.post(
    "/projects/{project_id}/services",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 409, 413, 429),
)
async def create_service(
    project_id: uuid.UUID, body: ServiceCreate, user: CurrentUser, ctx: ContextDep
) -> ServicePublic:
    given = body.registry_credentials
    view = await services.create_service(
        ctx,
        user,
        project_id=project_id,
        name=body.name,
        image=body.image,
        platform=body.platform,
        port=body.port,
        health_path=body.health_path,
        registry_credentials=given.change() if given else None,
        skip_verification=body.skip_verification,
    )
    return ServicePublic.model_validate(view)


@router.get("/projects/{project_id}/services")
async def list_services(project_id: uuid.UUID, user: CurrentUser, ctx: ContextDep) -> list[ServicePublic]:
    views = await services.list_services(ctx, user, project_id=project_id)
    return [ServicePublic.model_validate(view) for view in views]


@router.get("/services/{service_id}")
async def get_service(service_id: uuid.UUID, user: CurrentUser, ctx: ContextDep) -> ServicePublic:
    return ServicePublic.model_validate(await services.get_service(ctx, user, service_id=service_id))


@router.patch("/services/{service_id}", responses=error_responses(400, 409, 413))
async def update_service(
    service_id: uuid.UUID, body: ServiceUpdate, user: CurrentUser, ctx: ContextDep
) -> ServicePublic:
    """Change how the service deploys; a field left out keeps its value (``health_path: null``
    clears it). The next deploy uses the new values."""
    view = await services.update_service(ctx, user, service_id=service_id, change=body.change())
    return ServicePublic.model_validate(view)


@router.delete(
    "/services/{service_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(409)
)
async def delete_service(service_id: uuid.UUID, user: CurrentUser, ctx: ContextDep) -> Response:
    """Delete the service (owners): what the runtime runs for it is removed first (containers,
    Kubernetes objects incl. the pull Secret), then its stored credentials are destroyed. Its audit
    entries stay, and owners can still read its deployments. 409 ``deploy_in_progress`` while a
    deployment runs; 409 ``runtime_failed`` (nothing deleted) when the runtime could not remove it."""
    await deletion.delete_service(ctx, user, service_id=service_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
