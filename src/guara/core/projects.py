"""Projects and memberships. Every read goes through membership: a stranger's project is NotFound."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from guara.core import validation
from guara.core.accounts import Principal
from guara.core.errors import NotFound
from guara.store.models import Membership, Project


def create_project(session: Session, *, principal: Principal, name: str) -> Project:
    project = Project(name=validation.project_name(name))
    session.add(project)
    session.flush()
    session.add(Membership(project_id=project.id, user_id=principal.user_id, role="owner"))
    session.flush()
    return project


def list_projects(session: Session, *, principal: Principal) -> list[Project]:
    return [project for project, _role in list_projects_with_roles(session, principal=principal)]


def list_projects_with_roles(session: Session, *, principal: Principal) -> list[tuple[Project, str]]:
    """The caller's projects and the caller's role in each, in one query."""
    rows = session.execute(
        select(Project, Membership.role)
        .join(Membership, Membership.project_id == Project.id)
        .where(Membership.user_id == principal.user_id)
        .order_by(Project.created_at, Project.id)
    )
    return [(project, role) for project, role in rows]


def get_project(session: Session, *, principal: Principal, project_id: uuid.UUID) -> Project:
    project = session.scalar(
        select(Project)
        .join(Membership, Membership.project_id == Project.id)
        .where(Project.id == project_id, Membership.user_id == principal.user_id)
    )
    if project is None:
        raise NotFound("project not found")
    return project


def role_in(session: Session, *, principal: Principal, project_id: uuid.UUID) -> str:
    role = session.scalar(
        select(Membership.role).where(
            Membership.project_id == project_id, Membership.user_id == principal.user_id
        )
    )
    if role is None:
        raise NotFound("project not found")
    return role
