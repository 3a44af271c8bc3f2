"""Projects: create, list, get."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from guara.api.deps import CurrentUser, SessionDep
from guara.api.schemas import ProjectCreate, ProjectPublic
from guara.core import projects

router = APIRouter(prefix="/projects", tags=["projects"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_project(body: ProjectCreate, user: CurrentUser, session: SessionDep) -> ProjectPublic:
    project = projects.create_project(session, principal=user, name=body.name)
    return ProjectPublic(id=project.id, name=project.name, role="owner", created_at=project.created_at)


@router.get("")
def list_projects(user: CurrentUser, session: SessionDep) -> list[ProjectPublic]:
    return [
        ProjectPublic(id=project.id, name=project.name, role=role, created_at=project.created_at)
        for project, role in projects.list_projects_with_roles(session, principal=user)
    ]


@router.get("/{project_id}")
def get_project(project_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> ProjectPublic:
    project = projects.get_project(session, principal=user, project_id=project_id)
    role = projects.role_in(session, principal=user, project_id=project_id)
    return ProjectPublic(id=project.id, name=project.name, role=role, created_at=project.created_at)
