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
    action: Annotated[str | None, Query(max_length=64, description="e.g. member.add")] = None,
    actor: Annotated[str | None, Query(max_length=254, description="the acting account's email")] = None,
) -> AuditPagePublic:
    """The project's entries, newest first; filter by ``action`` and ``actor``. The log is append-only:
    no route changes or deletes an entry."""
    page = await audit.list_entries(
        ctx, user, project_id=project_id, limit=limit, cursor=cursor, action=action, actor=actor
    )
    return AuditPagePublic.model_validate(page)
