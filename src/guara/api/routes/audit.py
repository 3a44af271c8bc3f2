"""Audit log of a project, newest first."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from guara.api.deps import CurrentUser
from guara.api.schemas import AuditPagePublic, error_responses
from guara.core import audit
from guara.http.deps import ContextDep

router = APIRouter(tags=["audit"], responses=error_responses(401, 403, 404, 422))


@router.get("/projects/{project_id}/audit-logs")
async def list_audit_logs(
    project_id: uuid.UUID,
    user: CurrentUser,
    ctx: ContextDep,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = audit.DEFAULT_PAGE,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the page before")
    ] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditPagePublic:
    page = await audit.list_entries(
        ctx, user, project_id=project_id, limit=limit, cursor=cursor, action=action
    )
    return AuditPagePublic.model_validate(page)
