"""Audit log of a project, newest first."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from guara.api.deps import CurrentUser
from guara.api.schemas import AuditPagePublic
from guara.core import audit
from guara.http.deps import ContextDep

router = APIRouter(tags=["audit"])


@router.get("/projects/{project_id}/audit-logs")
async def list_audit_logs(
    project_id: uuid.UUID,
    user: CurrentUser,
    ctx: ContextDep,
    limit: int = audit.DEFAULT_PAGE,
    cursor: str | None = None,
    action: str | None = None,
) -> AuditPagePublic:
    page = await audit.list_entries(
        ctx, user, project_id=project_id, limit=limit, cursor=cursor, action=action
    )
    return AuditPagePublic.model_validate(page)
