"""The health of a service's stored credentials as the database holds it: what people see, what a
save resets, the expiry date, and how one check's result is recorded (with the audited transitions).

Running a check (opening the credentials, the preflight) is ``guara.core.health_checks``; this module
only works in the caller's transaction, so the credentials' own save can reset the results in its.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from guara.core import audit
from guara.core.accounts import SYSTEM, Principal
from guara.core.errors import InvalidInput
from guara.core.runtimes import RUNNING, SUCCEEDED
from guara.registry import parse_image_reference
from guara.store.models import CredentialHealth, Deployment, RegistryCredential, Service

HealthStatus = Literal["passing", "failing", "unknown"]
# How long before the expiry date people are warned (and the one audit entry is written).
EXPIRY_WINDOW = timedelta(days=14)
# Codes of a check that passed but whose expiry date is near or gone (a failed check keeps its own).
EXPIRES_SOON = "expires_soon"
EXPIRED = "expired"


@dataclass(frozen=True)
class HealthView:
    """The pinned ``registry_credentials.health`` of ``GET /services/{id}``."""

    status: HealthStatus
    last_checked_at: datetime | None
    last_passed_at: datetime | None
    failing_since: datetime | None
    code: str | None
    message: str
    expires_on: date | None

    @property
    def warns(self) -> bool:
        """Failing, or a passing check with its expiry date near: shown as a problem."""
        return self.status == "failing" or self.code in (EXPIRES_SOON, EXPIRED)


def health_of(credentials: RegistryCredential, row: CredentialHealth | None, *, today: date) -> HealthView:
    """The health of stored credentials: the last check's result, else their save's preflight."""
    if row is None or row.last_checked_at is None:
        verified = credentials.verified_at if credentials.verification == "passed" else None
        checked, passed, failing_since, code, message = verified, verified, None, None, ""
    else:
        checked, passed = row.last_checked_at, row.last_passed_at
        failing_since, code, message = row.failing_since, row.code, row.message
    status: HealthStatus = "unknown" if checked is None else "failing" if failing_since else "passing"
    expires_on = row.expires_on if row is not None else None
    if status != "failing" and expires_on is not None and today >= expires_on - EXPIRY_WINDOW:
        code, message = expiry_notice(expires_on, today=today)
    return HealthView(status, checked, passed, failing_since, code, message, expires_on)


def expiry_notice(expires_on: date, *, today: date) -> tuple[str, str]:
    days = (expires_on - today).days
    if days < 0:
        return EXPIRED, (
            f"these credentials expired on {expires_on.isoformat()} (the date given when they were saved); "
            "save new ones"
        )
    when = "today" if days == 0 else "tomorrow" if days == 1 else f"in {days} days"
    return EXPIRES_SOON, (
        f"these credentials expire on {expires_on.isoformat()} ({when}); save new ones before then"
    )


def row_for(session: Session, service: Service) -> CredentialHealth:
    """The service's health row, added to the session when it has none yet."""
    row = session.get(CredentialHealth, service.id)
    if row is None:
        row = CredentialHealth(
            service_id=service.id, project_id=service.project_id, message="", auto_deploy=False
        )
        session.add(row)
    return row


def reset_after_save(session: Session, service: Service, *, passed_at: datetime | None) -> None:
    """New credentials start over: passing when their save's preflight passed, else unknown. The
    expiry date stays (a new token of the same account often keeps it; the save may change it)."""
    row = row_for(session, service)
    row.last_checked_at = row.last_passed_at = passed_at
    row.failing_since, row.code, row.message = None, None, ""
    row.next_check_at = None  # due: the scheduler looks at new credentials in its next round


EARLIEST_EXPIRY = date(1970, 1, 1)


def valid_expiry(expires_on: date | None) -> date | None:
    """An expiry date people can mean (a date far in the past is a typo, and has no warning window)."""
    if expires_on is not None and expires_on < EARLIEST_EXPIRY:
        raise InvalidInput("expires_on must be a date from 1970-01-01 on", field="expires_on")
    return expires_on


def set_expiry(session: Session, service: Service, expires_on: date | None) -> None:
    valid_expiry(expires_on)
    row = row_for(session, service)
    if row.expires_on != expires_on:
        row.expires_on = expires_on
        row.expiry_warned_for = None


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result: ``code`` None exactly when it passed; ``digest`` what the tag points to
    for the service's platform (None when not read: nothing deployed to compare with)."""

    code: str | None
    message: str
    digest: str | None = None

    @property
    def passed(self) -> bool:
        return self.code is None


@dataclass(frozen=True)
class Transition:
    """What a recorded check changed, for notifications: the audit events it wrote."""

    service_id: uuid.UUID
    project_id: uuid.UUID
    service_name: str
    events: tuple[audit.AuditEvent, ...]
    # The tag moved and the service opted in to deploying it.
    deploy: bool = False


def record_check(
    session: Session,
    *,
    service: Service,
    credentials: RegistryCredential,
    outcome: CheckOutcome,
    now: datetime,
    deployed: str | None = None,
    actor: Principal = SYSTEM,
) -> Transition:
    """Store one check's result; a change between passing and failing, and entering the expiry
    window, is an audit entry (by ``actor``: the system for scheduled checks)."""
    row = row_for(session, service)
    was_failing = row.failing_since is not None
    row.last_checked_at = now
    events: list[audit.AuditEvent] = []
    registry = credentials.registry_host
    if outcome.passed:
        row.last_passed_at = now
        row.failing_since, row.code, row.message = None, None, ""
        if was_failing:
            events.append(audit.CheckRecovered(registry))
    else:
        row.code, row.message = outcome.code, outcome.message
        if not was_failing:
            row.failing_since = now
            events.append(audit.CheckFailed(registry, outcome.code or "network_error", outcome.message))
    expires_on = row.expires_on
    if (
        expires_on is not None
        and row.expiry_warned_for != expires_on
        and now.date() >= expires_on - EXPIRY_WINDOW
    ):
        row.expiry_warned_for = expires_on
        events.append(audit.ExpiryNear(registry, expires_on.isoformat()))
    moved = _note_tag(row, service.image, outcome, deployed) if outcome.passed else None
    if moved is not None:
        events.append(audit.TagMoved(moved.tag, moved.digest, moved.deployed_digest, row.auto_deploy))
    for event in events:
        audit.record(session, principal=actor, service=service, event=event)
    deploy = moved is not None and row.auto_deploy
    return Transition(service.id, service.project_id, service.name, tuple(events), deploy)


@dataclass(frozen=True)
class TagMoved:
    """The pinned ``tag_moved`` of a service: its tag points to ``digest``, ``deployed_digest`` runs."""

    tag: str
    digest: str
    deployed_digest: str


def _note_tag(
    row: CredentialHealth, image: str, outcome: CheckOutcome, deployed: str | None
) -> TagMoved | None:
    """Keep what the tag points to; a move not announced yet (once per digest) is returned."""
    if outcome.digest is None:
        return None
    row.tag_digest, row.tag_image = outcome.digest, image
    moved = tag_moved_of(image, row, deployed)
    if moved is None or row.tag_moved_to == moved.digest:
        return None
    row.tag_moved_to = moved.digest
    return moved


def tag_moved_of(image: str, row: CredentialHealth | None, deployed: str | None) -> TagMoved | None:
    """Whether the service's tag (as last checked) points elsewhere than its deployed digest."""
    if row is None or row.tag_digest is None or row.tag_image != image or deployed is None:
        return None
    if row.tag_digest == deployed:
        return None
    tag = parse_image_reference(image).tag
    return TagMoved(tag, row.tag_digest, deployed) if tag is not None else None


_DEPLOYED = (RUNNING, SUCCEEDED)


def deployed_digest(session: Session, service_id: uuid.UUID) -> str | None:
    """The digest of the service's deployment in place: its latest that succeeded or runs."""
    return session.scalar(
        select(Deployment.digest)
        .where(Deployment.service_id == service_id, Deployment.status.in_(_DEPLOYED))
        .order_by(Deployment.created_at.desc())
        .limit(1)
    )


def deployed_digests(
    session: Session, project_id: uuid.UUID, *, service_ids: Collection[uuid.UUID] | None = None
) -> dict[uuid.UUID, str]:
    """``deployed_digest`` of every service of a project (or of ``service_ids``) that has one (one
    query)."""
    latest_query = select(Deployment.service_id, func.max(Deployment.created_at).label("at")).where(
        Deployment.project_id == project_id, Deployment.status.in_(_DEPLOYED)
    )
    if service_ids is not None:
        latest_query = latest_query.where(Deployment.service_id.in_(service_ids))
    latest = latest_query.group_by(Deployment.service_id).subquery()
    rows = session.execute(
        select(Deployment.service_id, Deployment.digest)
        .join(
            latest, and_(Deployment.service_id == latest.c.service_id, Deployment.created_at == latest.c.at)
        )
        .where(Deployment.status.in_(_DEPLOYED))
    )
    return {service_id: digest for service_id, digest in rows if digest}
