"""Audit log: written in the caller's transaction, read newest first with keyset pagination."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from guara.core.accounts import Principal
from guara.core.errors import InvalidInput
from guara.core.projects import get_project
from guara.store.models import AuditLog, Service

MAX_PAGE = 200
CURSOR = re.compile(r"[0-9]{1,18}")  # an audit id; ASCII digits only ("²".isdigit() is True)


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditLog]
    next_cursor: str | None


def record(
    session: Session, *, principal: Principal, service: Service, action: str, details: dict[str, Any]
) -> None:
    """Add one entry about ``service`` to the current transaction. ``details`` never hold a secret."""
    session.add(
        AuditLog(
            project_id=service.project_id,
            actor_id=principal.user_id,
            actor_email=principal.email,
            action=action,
            target_type="service",
            target_id=str(service.id),
            target_name=service.name,
            details=details,
        )
    )


def list_entries(
    session: Session,
    *,
    principal: Principal,
    project_id: uuid.UUID,
    limit: int = 50,
    cursor: str | None = None,
    action: str | None = None,
) -> AuditPage:
    get_project(session, principal=principal, project_id=project_id)
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    query = select(AuditLog).where(AuditLog.project_id == project_id)
    if action:
        query = query.where(AuditLog.action == action)
    if cursor:
        if not CURSOR.fullmatch(cursor):
            raise InvalidInput("invalid cursor", field="cursor")
        query = query.where(AuditLog.id < int(cursor))
    rows = list(session.scalars(query.order_by(AuditLog.id.desc()).limit(limit + 1)))
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return AuditPage(rows[:limit], next_cursor)
