"""A project's audit log: who changed what (services, their credentials, members), when, and how it
was verified; filtered by action and actor."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from guara.core import audit, projects
from guara.http.deps import ContextDep
from guara.web.auth import WebUser
from guara.web.presenters import audit_row
from guara.web.views import render

router = APIRouter(include_in_schema=False)


@router.get("/projects/{project_id}/audit-logs")
async def audit_page(
    request: Request,
    ctx: ContextDep,
    user: WebUser,
    project_id: uuid.UUID,
    cursor: Annotated[str | None, Query(max_length=19)] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = audit.DEFAULT_PAGE,
    action: Annotated[str, Query(max_length=64)] = "",
    actor: Annotated[str, Query(max_length=254)] = "",
) -> Response:
    project = await projects.get_project(ctx, user, project_id=project_id)
    action, actor = action.strip(), actor.strip()
    page = await audit.list_entries(
        ctx,
        user,
        project_id=project_id,
        limit=limit,
        cursor=cursor,
        action=action or None,
        actor=actor or None,
    )
    base = f"/projects/{project_id}/audit-logs"
    kept = {"action": action, "actor": actor, "limit": str(limit) if limit != audit.DEFAULT_PAGE else ""}
    filters = urlencode({k: v for k, v in kept.items() if v})
    return render(
        request,
        "audit.html",
        project=project,
        rows=[audit_row(entry) for entry in page.entries],
        actions=[a.value for a in audit.AuditAction],
        action=action,
        actor=actor,
        first_page=cursor is None,
        first_url=base + (f"?{filters}" if filters else ""),
        next_url=f"{base}?cursor={page.next_cursor}" + (f"&{filters}" if filters else "")
        if page.next_cursor
        else None,
    )
