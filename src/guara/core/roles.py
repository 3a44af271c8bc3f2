"""Who may do what in a project: the one table of actions and the least role each needs.

Every check (``guara.core.access``) reads ``MINIMUM_ROLE``; the route tests read it too, so the table,
the code and the tests cannot drift apart. Roles are ordered: an owner may do everything a developer
may, a developer everything a viewer may.
"""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    VIEWER = "viewer"
    DEVELOPER = "developer"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.VIEWER: 0, Role.DEVELOPER: 1, Role.OWNER: 2}


class Action(enum.StrEnum):
    PROJECT_READ = "project.read"
    PROJECT_DELETE = "project.delete"
    MEMBERS_READ = "members.read"
    MEMBERS_MANAGE = "members.manage"
    # Removing oneself from a project (the last owner still cannot).
    PROJECT_LEAVE = "project.leave"
    AUDIT_READ = "audit.read"
    SERVICE_READ = "service.read"
    SERVICE_CREATE = "service.create"
    SERVICE_UPDATE = "service.update"
    SERVICE_DELETE = "service.delete"
    # Saving or removing a service's registry credentials, and testing with the stored ones.
    CREDENTIALS_WRITE = "credentials.write"
    CREDENTIALS_USE = "credentials.use"
    DEPLOY = "service.deploy"
    SERVICE_STOP = "service.stop"
    LOGS_READ = "service.logs"
    DEPLOYMENTS_READ = "deployments.read"
    # The deployment history of a deleted service.
    DELETED_HISTORY_READ = "deployments.read_deleted"
    # A project's notification webhook: its URL may itself be a secret (chat webhooks), so not viewers.
    WEBHOOK_READ = "webhook.read"
    WEBHOOK_MANAGE = "webhook.manage"


MINIMUM_ROLE: dict[Action, Role] = {
    Action.PROJECT_READ: Role.VIEWER,
    Action.PROJECT_DELETE: Role.OWNER,
    Action.MEMBERS_READ: Role.VIEWER,
    Action.MEMBERS_MANAGE: Role.OWNER,
    Action.PROJECT_LEAVE: Role.VIEWER,
    Action.AUDIT_READ: Role.VIEWER,
    Action.SERVICE_READ: Role.VIEWER,
    Action.SERVICE_CREATE: Role.DEVELOPER,
    Action.SERVICE_UPDATE: Role.DEVELOPER,
    Action.SERVICE_DELETE: Role.OWNER,
    Action.CREDENTIALS_WRITE: Role.DEVELOPER,
    Action.CREDENTIALS_USE: Role.DEVELOPER,
    Action.DEPLOY: Role.DEVELOPER,
    Action.SERVICE_STOP: Role.DEVELOPER,
    Action.LOGS_READ: Role.VIEWER,
    Action.DEPLOYMENTS_READ: Role.VIEWER,
    Action.DELETED_HISTORY_READ: Role.OWNER,
    Action.WEBHOOK_READ: Role.DEVELOPER,
    Action.WEBHOOK_MANAGE: Role.OWNER,
}


def allows(role: Role | str, action: Action) -> bool:
    """Whether a member with ``role`` may do ``action`` (an unknown role may do nothing)."""
    try:
        held = Role(role)
    except ValueError:
        return False
    return held.rank >= MINIMUM_ROLE[action].rank
