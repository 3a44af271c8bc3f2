"""Members of a project: add by email, list, change a role, remove (or leave: remove yourself)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from guara.api.deps import CurrentUser
from guara.api.schemas import MemberCreate, MemberPublic, MemberUpdate, error_responses
from guara.core import members
from guara.http.deps import ContextDep

router = APIRouter(
    prefix="/projects/{project_id}/members", tags=["members"], responses=error_responses(401, 403, 404, 422)
)


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 409, 413))
async def add_member(
    project_id: uuid.UUID, body: MemberCreate, user: CurrentUser, ctx: ContextDep
) -> MemberPublic:
    view = await members.add_member(ctx, user, project_id=project_id, email=body.email, role=body.role)
    return MemberPublic.model_validate(view)


@router.get("")
async def list_members(project_id: uuid.UUID, user: CurrentUser, ctx: ContextDep) -> list[MemberPublic]:
    views = await members.list_members(ctx, user, project_id=project_id)
    return [MemberPublic.model_validate(view) for view in views]


@router.patch("/{user_id}", responses=error_responses(400, 409, 413))
async def change_role(
    project_id: uuid.UUID, user_id: uuid.UUID, body: MemberUpdate, user: CurrentUser, ctx: ContextDep
) -> MemberPublic:
    """Give a member another role; demoting the last owner answers 409 ``last_owner``."""
    view = await members.change_role(ctx, user, project_id=project_id, user_id=user_id, role=body.role)
    return MemberPublic.model_validate(view)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(409))
async def remove_member(
    project_id: uuid.UUID, user_id: uuid.UUID, user: CurrentUser, ctx: ContextDep
) -> Response:
    """Remove a member (owners), or leave the project by naming yourself; the last owner can do neither
    (409 ``last_owner``)."""
    await members.remove_member(ctx, user, project_id=project_id, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
