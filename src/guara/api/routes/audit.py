"""Audit log of a project, newest first."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from guara.api.deps import CurrentUser, SessionDep
from guara.api.schemas import AuditEntryPublic, AuditPagePublic
from guara.core import audit

router = APIRouter(tags=["audit"])


@router.get("/projects/{project_id}/audit-logs")
def list_audit_logs(
    project_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    limit: int = 50,
    cursor: str | None = None,
    action: str | None = None,
) -> AuditPagePublic:
    page = audit.list_entries(
        session, principal=user, project_id=project_id, limit=limit, cursor=cursor, action=action
    )
    return AuditPagePublic(
        entries=[
            AuditEntryPublic(
                id=e.id,
                action=e.action,
                actor_email=e.actor_email,
                target_type=e.target_type,
                target_id=e.target_id,
                target_name=e.target_name,
                details=e.details,
                created_at=e.created_at,
            )
            for e in page.entries
        ],
        next_cursor=page.next_cursor,
    )
