"""The health of a service's stored credentials as the database holds it: what people see, what a
save resets, the expiry date, and how one check's result is recorded (with the audited transitions).

Running a check (opening the credentials, the preflight) is ``guara.core.health_checks``; this module
only works in the caller's transaction, so the credentials' own save can reset the results in its.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from guara.core import audit
from guara.core.accounts import SYSTEM, Principal
from guara.store.models import CredentialHealth, RegistryCredential, Service

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
        row = CredentialHealth(service_id=service.id, project_id=service.project_id, message="")
        session.add(row)
    return row


def reset_after_save(session: Session, service: Service, *, passed_at: datetime | None) -> None:
    """New credentials start over: passing when their save's preflight passed, else unknown. The
    expiry date stays (a new token of the same account often keeps it; the save may change it)."""
    row = row_for(session, service)
    row.last_checked_at = row.last_passed_at = passed_at
    row.failing_since, row.code, row.message = None, None, ""
    row.next_check_at = None  # due: the scheduler looks at new credentials in its next round


def set_expiry(session: Session, service: Service, expires_on: date | None) -> None:
    row = row_for(session, service)
    if row.expires_on != expires_on:
        row.expires_on = expires_on
        row.expiry_warned_for = None


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result: ``code`` None exactly when it passed; ``digest`` what the tag points to."""

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


def record_check(
    session: Session,
    *,
    service: Service,
    credentials: RegistryCredential,
    outcome: CheckOutcome,
    now: datetime,
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
    for event in events:
        audit.record(session, principal=actor, service=service, event=event)
    return Transition(service.id, service.project_id, service.name, tuple(events))
