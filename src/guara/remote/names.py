"""Projects and services named by id or by name, resolved through the list endpoints."""

from __future__ import annotations

import uuid

from guara.remote.client import GuaraClient, Project, Service
from guara.remote.errors import RemoteError


def _as_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def find_project(client: GuaraClient, ref: str) -> Project:
    if (project_id := _as_id(ref)) is not None:
        return client.get_project(project_id)
    matches = [project for project in client.list_projects() if project.name == ref]
    if not matches:
        raise RemoteError("not_found", f"no project named '{ref}' (guara projects list shows yours)")
    if len(matches) > 1:
        ids = ", ".join(str(project.id) for project in matches)
        raise RemoteError("ambiguous", f"{len(matches)} projects are named '{ref}': name one by id ({ids})")
    return matches[0]


def find_service(client: GuaraClient, ref: str, *, project: str | None = None) -> Service:
    """A service by id, or by name in ``project`` (any of the caller's projects when not given)."""
    if (service_id := _as_id(ref)) is not None:
        service = client.get_service(service_id)
        if project is not None and find_project(client, project).id != service.project_id:
            raise RemoteError("not_found", f"service {ref} is not in project '{project}'")
        return service
    projects = [find_project(client, project)] if project is not None else client.list_projects()
    found = [
        (where, service)
        for where in projects
        for service in client.list_services(where.id)
        if service.name == ref
    ]
    if not found:
        place = f"project '{project}'" if project is not None else "any of your projects"
        raise RemoteError("not_found", f"no service named '{ref}' in {place}")
    if len(found) > 1:
        names = ", ".join(sorted(where.name for where, _ in found))
        raise RemoteError(
            "ambiguous",
            f"services named '{ref}' are in several projects ({names}): pass --project, or name it by id",
        )
    return found[0][1]
