"""Audit log: typed events written in the caller's transaction, read newest first with keyset pagination.

Each kind of entry is one dataclass: it knows its ``action``, the JSON ``details`` it stores (a wire
format: keys are only ever added, never renamed or reordered in meaning) and the one-line ``summary``
people read. Reading turns stored details back into the event (``event_from``), so the dashboard and
the API never parse dict keys themselves. Details never hold a secret or a username.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from guara.core.access import project_of
from guara.core.accounts import SYSTEM, Principal
from guara.core.errors import InvalidInput
from guara.core.roles import Action
from guara.store.models import AuditLog, Service

if TYPE_CHECKING:
    from guara.context import AppContext

MAX_PAGE = 200
DEFAULT_PAGE = 50
CURSOR = re.compile(r"[0-9]{1,18}")  # an audit id; ASCII digits only ("²".isdigit() is True)

Verification = Literal["passed", "overridden"]


class AuditAction(enum.StrEnum):
    SERVICE_CREATE = "service.create"
    SERVICE_UPDATE = "service.update"
    SERVICE_DEPLOY = "service.deploy"
    SERVICE_STOP = "service.stop"
    MEMBER_ADD = "member.add"
    MEMBER_ROLE = "member.role"
    MEMBER_REMOVE = "member.remove"
    SERVICE_DELETE = "service.delete"
    PROJECT_DELETE = "project.delete"
    CREDENTIALS_CHECK_FAILED = "credentials.check_failed"
    CREDENTIALS_CHECK_RECOVERED = "credentials.check_recovered"
    CREDENTIALS_EXPIRING = "credentials.expiring"
    SERVICE_TAG_MOVED = "service.tag_moved"


@dataclass(frozen=True)
class ServiceCreated:
    image: str
    platform: str
    # Set when the service was created with credentials: their registry and how they were verified.
    registry: str | None = None
    preflight: Verification | None = None

    action = AuditAction.SERVICE_CREATE

    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"image": self.image, "platform": self.platform}
        if self.registry is not None:
            details |= {"credentials": "added", "registry": self.registry, "preflight": self.preflight}
        return details

    @property
    def summary(self) -> str:
        if self.registry is None:
            return f"Created the service from {self.image or 'an image'} (anonymous pulls)"
        return f"Created the service with registry credentials for {self.registry}: {_how(self.preflight)}"

    @property
    def outcome(self) -> str:
        return "" if self.registry is None else _outcome(self.preflight)


@dataclass(frozen=True)
class CredentialsSaved:
    registry: str
    added: bool
    changed: tuple[str, ...]
    preflight: Verification

    action = AuditAction.SERVICE_UPDATE

    def details(self) -> dict[str, Any]:
        return {
            "credentials": "added" if self.added else "updated",
            "registry": self.registry,
            "changed": list(self.changed),
            "preflight": self.preflight,
        }

    @property
    def summary(self) -> str:
        if self.added:
            return f"Added registry credentials for {self.registry}: {_how(self.preflight)}"
        what = f" ({', '.join(self.changed)} changed)" if self.changed else ""
        return f"Updated registry credentials for {self.registry}{what}: {_how(self.preflight)}"

    @property
    def outcome(self) -> str:
        return _outcome(self.preflight)


@dataclass(frozen=True)
class CredentialsRemoved:
    registry: str

    action = AuditAction.SERVICE_UPDATE
    outcome = "removed"

    def details(self) -> dict[str, Any]:
        return {"credentials": "removed", "registry": self.registry}

    @property
    def summary(self) -> str:
        return f"Removed registry credentials for {self.registry}; the service now pulls anonymously"


@dataclass(frozen=True)
class PlatformChanged:
    platform: str
    previous: str

    action = AuditAction.SERVICE_UPDATE
    outcome = ""

    def details(self) -> dict[str, Any]:
        return {"platform": self.platform, "previous_platform": self.previous}

    @property
    def summary(self) -> str:
        return f"Set the deploy platform to {self.platform} (was {self.previous})"


@dataclass(frozen=True)
class SettingsChanged:
    """Deploy settings of a service changed: each field with its previous and new value."""

    changes: tuple[tuple[str, str | None, str | None], ...]

    action = AuditAction.SERVICE_UPDATE
    outcome = ""

    def details(self) -> dict[str, Any]:
        return {"settings": {name: {"from": old, "to": new} for name, old, new in self.changes}}

    @property
    def summary(self) -> str:
        parts = [
            f"{name.replace('_', ' ')} from {old or '(none)'} to {new or '(none)'}"
            for name, old, new in self.changes
        ]
        return "Changed " + ", ".join(parts)


@dataclass(frozen=True)
class Stopped:
    """The service was stopped: its containers removed."""

    deployment_ids: tuple[str, ...]

    action = AuditAction.SERVICE_STOP
    outcome = ""

    def details(self) -> dict[str, Any]:
        return {"deployments": list(self.deployment_ids)}

    @property
    def summary(self) -> str:
        return "Stopped the service" + ("" if self.deployment_ids else " (nothing was running)")


@dataclass(frozen=True)
class Deployed:
    """The end of a deployment, successful or not."""

    deployment_id: str
    status: str
    digest: str | None
    with_credentials: bool
    code: str | None
    image: str
    platform: str

    action = AuditAction.SERVICE_DEPLOY
    outcome = ""

    def details(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id,
            "status": self.status,
            "digest": self.digest,
            "with_credentials": self.with_credentials,
            "code": self.code,
            "image": self.image,
            "platform": self.platform,
        }

    @property
    def summary(self) -> str:
        how = "with registry credentials" if self.with_credentials else "anonymously"
        if self.status == "succeeded":
            return f"Deployed {self.digest}, pulled {how}"
        return f"Deploy failed ({self.code}), pulling {how}"


@dataclass(frozen=True)
class MemberAdded:
    email: str
    role: str

    action = AuditAction.MEMBER_ADD
    outcome = ""

    def details(self) -> dict[str, Any]:
        return {"email": self.email, "role": self.role}

    @property
    def summary(self) -> str:
        return f"Added {self.email} as {self.role}"


@dataclass(frozen=True)
class MemberRoleChanged:
    email: str
    role: str
    previous: str

    action = AuditAction.MEMBER_ROLE
    outcome = ""

    def details(self) -> dict[str, Any]:
        return {"email": self.email, "role": self.role, "previous_role": self.previous}

    @property
    def summary(self) -> str:
        return f"Changed the role of {self.email} to {self.role} (was {self.previous})"


@dataclass(frozen=True)
class MemberRemoved:
    email: str
    role: str
    # The member removed themselves.
    left: bool

    action = AuditAction.MEMBER_REMOVE
    outcome = ""

    def details(self) -> dict[str, Any]:
        return {"email": self.email, "role": self.role, "left": self.left}

    @property
    def summary(self) -> str:
        if self.left:
            return f"{self.email} left the project (was {self.role})"
        return f"Removed {self.email} (was {self.role})"


@dataclass(frozen=True)
class ServiceDeleted:
    """The service was deleted: what ran stopped, its stored credentials destroyed."""

    image: str
    # The registry of the credentials deleted with it (None: it had none).
    registry: str | None
    deployments: int

    action = AuditAction.SERVICE_DELETE
    outcome = ""

    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"image": self.image, "deployments": self.deployments}
        if self.registry is not None:
            details |= {"credentials": "deleted", "registry": self.registry}
        return details

    @property
    def summary(self) -> str:
        how = f"; its registry credentials for {self.registry} were destroyed" if self.registry else ""
        return f"Deleted the service ({self.image}){how}"


@dataclass(frozen=True)
class ProjectDeleted:
    services: tuple[str, ...]

    action = AuditAction.PROJECT_DELETE
    outcome = ""

    def details(self) -> dict[str, Any]:
        return {"services": list(self.services)}

    @property
    def summary(self) -> str:
        if not self.services:
            return "Deleted the project"
        return f"Deleted the project with its services {', '.join(self.services)}"


@dataclass(frozen=True)
class CheckFailed:
    """A re-check of stored credentials failed after passing (or never having been checked)."""

    registry: str
    code: str
    message: str

    action = AuditAction.CREDENTIALS_CHECK_FAILED
    outcome = "failed"

    def details(self) -> dict[str, Any]:
        return {"registry": self.registry, "code": self.code, "message": self.message}

    @property
    def summary(self) -> str:
        return f"Registry credentials for {self.registry} stopped working ({self.code}): {self.message}"


@dataclass(frozen=True)
class CheckRecovered:
    """A re-check of stored credentials passed again after failing."""

    registry: str

    action = AuditAction.CREDENTIALS_CHECK_RECOVERED
    outcome = "passed"

    def details(self) -> dict[str, Any]:
        return {"registry": self.registry}

    @property
    def summary(self) -> str:
        return f"Registry credentials for {self.registry} work again"


@dataclass(frozen=True)
class ExpiryNear:
    """Stored credentials entered the warning window before the expiry date the user gave."""

    registry: str
    expires_on: str  # ISO date

    action = AuditAction.CREDENTIALS_EXPIRING
    outcome = ""

    def details(self) -> dict[str, Any]:
        return {"registry": self.registry, "expires_on": self.expires_on}

    @property
    def summary(self) -> str:
        return f"Registry credentials for {self.registry} expire on {self.expires_on}: renew them"


@dataclass(frozen=True)
class TagMoved:
    """The service's tag now points to another digest than the deployed one."""

    tag: str
    digest: str
    deployed_digest: str
    auto_deploy: bool

    action = AuditAction.SERVICE_TAG_MOVED
    outcome = ""

    def details(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "digest": self.digest,
            "deployed_digest": self.deployed_digest,
            "auto_deploy": self.auto_deploy,
        }

    @property
    def summary(self) -> str:
        then = "; deploying it (auto-deploy)" if self.auto_deploy else ""
        return f"{self.tag} now points to {self.digest}, deployed {self.deployed_digest}{then}"


AuditEvent = (
    ServiceCreated
    | CredentialsSaved
    | CredentialsRemoved
    | PlatformChanged
    | SettingsChanged
    | Deployed
    | Stopped
    | MemberAdded
    | MemberRoleChanged
    | MemberRemoved
    | ServiceDeleted
    | ProjectDeleted
    | CheckFailed
    | CheckRecovered
    | ExpiryNear
    | TagMoved
)


def _how(preflight: Verification | None) -> str:
    return "Test Connection passed" if preflight == "passed" else "saved without verifying"


def _outcome(preflight: Verification | None) -> str:
    return "passed" if preflight == "passed" else "overridden"


def _text(details: dict[str, Any], key: str) -> str:
    value = details.get(key)
    return "" if value is None else str(value)


def _verification(details: dict[str, Any]) -> Verification:
    return "passed" if details.get("preflight") == "passed" else "overridden"


def event_from(action: str, details: dict[str, Any]) -> AuditEvent | None:
    """The typed event behind a stored entry; None for an action this version does not know."""
    credentials = details.get("credentials")
    if action == AuditAction.SERVICE_CREATE:
        registry = _text(details, "registry") if credentials == "added" else None
        return ServiceCreated(
            image=_text(details, "image"),
            platform=_text(details, "platform"),
            registry=registry,
            preflight=_verification(details) if registry is not None else None,
        )
    if action == AuditAction.SERVICE_UPDATE:
        if credentials == "removed":
            return CredentialsRemoved(_text(details, "registry"))
        if credentials in ("added", "updated"):
            changed = details.get("changed")
            return CredentialsSaved(
                registry=_text(details, "registry"),
                added=credentials == "added",
                changed=tuple(str(field) for field in changed) if isinstance(changed, list) else (),
                preflight=_verification(details),
            )
        if "platform" in details:
            return PlatformChanged(_text(details, "platform"), _text(details, "previous_platform"))
        settings = details.get("settings")
        if isinstance(settings, dict):
            return SettingsChanged(
                tuple(
                    (str(name), _text(change, "from") or None, _text(change, "to") or None)
                    for name, change in settings.items()
                    if isinstance(change, dict)
                )
            )
        return None
    if action == AuditAction.SERVICE_STOP:
        deployments = details.get("deployments")
        return Stopped(tuple(str(d) for d in deployments) if isinstance(deployments, list) else ())
    if action == AuditAction.SERVICE_DEPLOY:
        digest, code = details.get("digest"), details.get("code")
        return Deployed(
            deployment_id=_text(details, "deployment_id"),
            status=_text(details, "status"),
            digest=str(digest) if digest is not None else None,
            with_credentials=bool(details.get("with_credentials")),
            code=str(code) if code is not None else None,
            image=_text(details, "image"),
            platform=_text(details, "platform"),
        )
    if action == AuditAction.SERVICE_DELETE:
        deployments = details.get("deployments")
        return ServiceDeleted(
            image=_text(details, "image"),
            registry=_text(details, "registry") if credentials == "deleted" else None,
            deployments=deployments if isinstance(deployments, int) else 0,
        )
    if action == AuditAction.PROJECT_DELETE:
        services = details.get("services")
        return ProjectDeleted(tuple(str(s) for s in services) if isinstance(services, list) else ())
    if action == AuditAction.MEMBER_ADD:
        return MemberAdded(_text(details, "email"), _text(details, "role"))
    if action == AuditAction.MEMBER_ROLE:
        return MemberRoleChanged(
            _text(details, "email"), _text(details, "role"), _text(details, "previous_role")
        )
    if action == AuditAction.MEMBER_REMOVE:
        return MemberRemoved(_text(details, "email"), _text(details, "role"), bool(details.get("left")))
    if action == AuditAction.CREDENTIALS_CHECK_FAILED:
        return CheckFailed(_text(details, "registry"), _text(details, "code"), _text(details, "message"))
    if action == AuditAction.CREDENTIALS_CHECK_RECOVERED:
        return CheckRecovered(_text(details, "registry"))
    if action == AuditAction.SERVICE_TAG_MOVED:
        return TagMoved(
            _text(details, "tag"),
            _text(details, "digest"),
            _text(details, "deployed_digest"),
            bool(details.get("auto_deploy")),
        )
    if action == AuditAction.CREDENTIALS_EXPIRING:
        return ExpiryNear(_text(details, "registry"), _text(details, "expires_on"))
    return None


@dataclass(frozen=True)
class AuditEntry:
    """One entry as stored, with its event's summary for people."""

    id: int
    action: str
    actor_email: str
    target_type: str
    target_id: str
    target_name: str
    details: dict[str, Any]
    created_at: datetime
    summary: str
    # passed | overridden | removed for credentials changes, else "".
    outcome: str
    # The entry's service has been deleted since (its page no longer exists).
    target_deleted: bool = False


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_cursor: str | None


def record(session: Session, *, principal: Principal, service: Service, event: AuditEvent) -> None:
    """Add one entry about ``service`` to the current transaction."""
    record_in_project(
        session,
        principal=principal,
        project_id=service.project_id,
        target=Target("service", str(service.id), service.name),
        event=event,
    )


@dataclass(frozen=True)
class Target:
    """What an entry is about: a service, a member (a user), a project."""

    type: str
    id: str
    name: str


def record_in_project(
    session: Session, *, principal: Principal, project_id: uuid.UUID, target: Target, event: AuditEvent
) -> None:
    """Add one entry of project ``project_id`` about ``target`` to the current transaction."""
    session.add(
        AuditLog(
            project_id=project_id,
            # The system is no user row: its entries have no actor id (the email says "guara").
            actor_id=None if principal == SYSTEM else principal.user_id,
            actor_email=principal.email,
            action=event.action.value,
            target_type=target.type,
            target_id=target.id,
            target_name=target.name[:100],
            details=event.details(),
        )
    )


def entry_of(row: AuditLog, *, target_deleted: bool = False) -> AuditEntry:
    """A stored row as an entry, its time in UTC (SQLite hands back naive times, which are UTC)."""
    details: dict[str, Any] = row.details or {}
    event = event_from(row.action, details)
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return AuditEntry(
        id=row.id,
        action=row.action,
        actor_email=row.actor_email,
        target_type=row.target_type,
        target_id=row.target_id,
        target_name=row.target_name,
        details=details,
        created_at=created,
        summary=event.summary if event else row.action.replace(".", " ").capitalize(),
        outcome=event.outcome if event else "",
        target_deleted=target_deleted,
    )


def _deleted_services(session: Session, ids: set[str]) -> set[str]:
    wanted = []
    for text in ids:
        try:
            wanted.append(uuid.UUID(text))
        except ValueError:
            continue
    if not wanted:
        return set()
    found = session.scalars(select(Service.id).where(Service.id.in_(wanted), Service.deleted_at.is_not(None)))
    return {str(service_id) for service_id in found}


async def list_entries(
    ctx: AppContext,
    principal: Principal,
    *,
    project_id: uuid.UUID,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
    action: str | None = None,
    actor: str | None = None,
) -> AuditPage:
    """A page of the project's entries, newest first; ``next_cursor`` continues after it. ``action``
    and ``actor`` (an email) keep only the entries that match."""

    def work(session: Session) -> AuditPage:
        # A stranger learns nothing more.
        project_of(session, principal=principal, project_id=project_id, action=Action.AUDIT_READ)
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        if cursor and not CURSOR.fullmatch(cursor):
            raise InvalidInput("invalid cursor", field="cursor")
        query = select(AuditLog).where(AuditLog.project_id == project_id)
        if action:
            query = query.where(AuditLog.action == action)
        if actor:
            query = query.where(AuditLog.actor_email == actor.strip().lower())
        if cursor:
            query = query.where(AuditLog.id < int(cursor))
        rows = list(session.scalars(query.order_by(AuditLog.id.desc()).limit(limit + 1)))
        next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
        rows = rows[:limit]
        deleted = _deleted_services(session, {row.target_id for row in rows if row.target_type == "service"})
        entries = [entry_of(row, target_deleted=row.target_id in deleted) for row in rows]
        return AuditPage(entries, next_cursor)

    return await ctx.db.run(work)
