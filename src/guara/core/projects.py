"""Projects and memberships. Every read goes through membership: a stranger's project is NotFound."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from guara.core import validation
from guara.core.access import project_of
from guara.core.accounts import Principal
from guara.core.roles import Action
from guara.store import flush
from guara.store.models import Membership, Project

if TYPE_CHECKING:
    from guara.context import AppContext


@dataclass(frozen=True)
class ProjectView:
    """A project as its member sees it, with the member's role."""

    id: uuid.UUID
    name: str
    role: str
    created_at: datetime


def _view(project: Project, role: str) -> ProjectView:
    return ProjectView(id=project.id, name=project.name, role=role, created_at=project.created_at)


async def create_project(ctx: AppContext, principal: Principal, *, name: str) -> ProjectView:
    """A new project whose only member, the caller, is its owner."""
    checked = validation.project_name(name)

    def work(session: Session) -> ProjectView:
        project = Project(name=checked)
        session.add(project)
        flush(session)
        session.add(Membership(project_id=project.id, user_id=principal.user_id, role="owner"))
        flush(session)
        return _view(project, "owner")

    return await ctx.db.run(work)


async def list_projects(ctx: AppContext, principal: Principal) -> list[ProjectView]:
    """The caller's projects, oldest first, with the caller's role in each (one query)."""

    def work(session: Session) -> list[ProjectView]:
        rows = session.execute(
            select(Project, Membership.role)
            .join(Membership, Membership.project_id == Project.id)
            .where(Membership.user_id == principal.user_id, Project.deleted_at.is_(None))
            .order_by(Project.created_at, Project.id)
        )
        return [_view(project, role) for project, role in rows]

    return await ctx.db.run(work)


async def get_project(
    ctx: AppContext, principal: Principal, *, project_id: uuid.UUID, action: Action = Action.PROJECT_READ
) -> ProjectView:
    """The project; ``action``: only when the caller's role allows it (a page leading to it)."""

    def work(session: Session) -> ProjectView:
        return _view(*project_of(session, principal=principal, project_id=project_id, action=action))

    return await ctx.db.run(work)
