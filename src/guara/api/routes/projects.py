"""Projects: create, list, get, delete."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from guara.api.deps import CurrentUser
from guara.api.schemas import ProjectCreate, ProjectPublic, error_responses
from guara.core import deletion, projects
from guara.http.deps import ContextDep

router = APIRouter(prefix="/projects", tags=["projects"], responses=error_responses(401, 422))


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 413))
async def create_project(body: ProjectCreate, user: CurrentUser, ctx: ContextDep) -> ProjectPublic:
    return ProjectPublic.model_validate(await projects.create_project(ctx, user, name=body.name))


@router.get("")
async def list_projects(user: CurrentUser, ctx: ContextDep) -> list[ProjectPublic]:
    return [ProjectPublic.model_validate(view) for view in await projects.list_projects(ctx, user)]


@router.get("/{project_id}", responses=error_responses(404))
async def get_project(project_id: uuid.UUID, user: CurrentUser, ctx: ContextDep) -> ProjectPublic:
    return ProjectPublic.model_validate(await projects.get_project(ctx, user, project_id=project_id))


@router.delete(
    "/{project_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(403, 404, 409)
)
async def delete_project(
    project_id: uuid.UUID,
    user: CurrentUser,
    ctx: ContextDep,
    cascade: Annotated[bool, Query(description="also delete the project's services")] = False,
) -> Response:
    """Delete the project (owners). While it has services: 409 ``project_not_empty``, unless
    ``?cascade=true``, which deletes each service as ``DELETE /services/{id}`` does."""
    await deletion.delete_project(ctx, user, project_id=project_id, cascade=cascade)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
