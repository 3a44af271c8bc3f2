"""A project's audit log: who changed which service's credentials, when, and how it was verified."""

from __future__ import annotations

import uuid
from typing import Annotated

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
) -> Response:
    project = await projects.get_project(ctx, user, project_id=project_id)
    page = await audit.list_entries(ctx, user, project_id=project_id, limit=limit, cursor=cursor)
    base = f"/projects/{project_id}/audit-logs"
    suffix = f"&limit={limit}" if limit != audit.DEFAULT_PAGE else ""
    return render(
        request,
        "audit.html",
        project=project,
        rows=[audit_row(entry) for entry in page.entries],
        first_page=cursor is None,
        first_url=base + (f"?limit={limit}" if suffix else ""),
        next_url=f"{base}?cursor={page.next_cursor}{suffix}" if page.next_cursor else None,
    )
