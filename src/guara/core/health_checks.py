"""Re-checking stored credentials: one check of one service (the scheduler's unit of work, never
counted against anyone's limit) and *Check now* (a user's, counted like Test Connection).

A check opens the stored password for the one preflight, runs it on the event loop between two short
transactions, and records the result only if the credentials it checked are still the stored ones
(a save racing the check wins).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from guara.core import credential_health, credentials, deployments
from guara.core.access import service_of
from guara.core.accounts import SYSTEM, Principal
from guara.core.credential_health import CheckOutcome, HealthView, Transition
from guara.core.errors import Conflict, CredentialsUnreadable, GuaraError, InvalidInput
from guara.core.preflights import RegistryLogin, count_preflight, run_preflight
from guara.core.roles import Action
from guara.deploy import ResolvedImage, parse_platform, resolve_image
from guara.store.models import CredentialHealth, Membership, RegistryCredential, Service, User, utcnow

if TYPE_CHECKING:
    from guara.context import AppContext

log = logging.getLogger("guara.health")

NO_CREDENTIALS = (
    "the service has no registry credentials to check; add them under Settings → Private Registry"
)


@dataclass(frozen=True)
class CheckResult:
    """A recorded check: the health after it, and the transitions it caused (None: not recorded
    because the credentials changed or went away while it ran)."""

    health: HealthView | None
    transition: Transition | None


@dataclass(frozen=True)
class _Loaded:
    image: str
    platform: str
    fingerprint: str
    login: RegistryLogin | None
    unreadable: str | None  # the reason the stored password did not open
    deployed: str | None  # the digest deployed now, to tell whether the tag moved


def _load(ctx: AppContext, session: Session, service: Service) -> _Loaded | None:
    fingerprint = credentials.fingerprint(session, service_id=service.id)
    if fingerprint is None:
        return None
    deployed = credential_health.deployed_digest(session, service.id)
    try:
        login = credentials.open_stored(ctx, session, service_id=service.id)
    except CredentialsUnreadable as exc:
        return _Loaded(service.image, service.platform, fingerprint, None, exc.message, deployed)
    return _Loaded(service.image, service.platform, fingerprint, login, None, deployed)


async def _outcome(ctx: AppContext, loaded: _Loaded) -> CheckOutcome:
    if loaded.login is None:
        return CheckOutcome(CredentialsUnreadable.code, loaded.unreadable or "")
    login = loaded.login
    result = await run_preflight(ctx, image=loaded.image, login=login)
    if not result.ok:
        return CheckOutcome(result.code.value if result.code else "network_error", result.message)
    if loaded.deployed is None or result.digest == loaded.deployed:
        return CheckOutcome(None, "", result.digest if loaded.deployed else None)
    # Another digest than the deployed one: an index (the deployed digest is its platform's manifest),
    # or the tag moved. Resolving for the service's platform tells which, exactly as a deploy would.
    resolution = await resolve_image(
        loaded.image,
        platform=parse_platform(loaded.platform),
        options=ctx.registry,
        registry=login.registry,
        username=login.username,
        password=login.password,
    )
    digest = resolution.digest if isinstance(resolution, ResolvedImage) else None
    return CheckOutcome(None, "", digest)


def _record(
    ctx: AppContext,
    session: Session,
    *,
    service_id: uuid.UUID,
    loaded: _Loaded,
    outcome: CheckOutcome,
    now: datetime,
    actor: Principal,
) -> CheckResult:
    service = session.get(Service, service_id)
    stored = session.get(RegistryCredential, service_id)
    if service is None or stored is None:
        return CheckResult(None, None)
    if credentials.fingerprint(session, service_id=service_id) != loaded.fingerprint:
        # Saved or replaced while the check ran: the result is about credentials no longer stored.
        return CheckResult(None, None)
    transition = credential_health.record_check(
        session,
        service=service,
        credentials=stored,
        outcome=outcome,
        now=now,
        deployed=credential_health.deployed_digest(session, service_id),
        actor=actor,
    )
    health = credential_health.health_of(stored, session.get(CredentialHealth, service_id), today=now.date())
    return CheckResult(health, transition)


async def check_service(
    ctx: AppContext, *, service_id: uuid.UUID, now: datetime | None = None
) -> CheckResult:
    """One scheduled check of a service's stored credentials, as the system: not rate limited.
    Nothing happens for a service without credentials (or one that is gone)."""

    def load(session: Session) -> _Loaded | None:
        service = session.get(Service, service_id)
        return _load(ctx, session, service) if service is not None else None

    loaded = await ctx.db.run(load)
    if loaded is None:
        return CheckResult(None, None)
    outcome = await _outcome(ctx, loaded)
    at = now or utcnow()
    result = await ctx.db.run(
        lambda session: _record(
            ctx, session, service_id=service_id, loaded=loaded, outcome=outcome, now=at, actor=SYSTEM
        )
    )
    ctx.webhooks.dispatch(ctx, result.transition)
    if result.transition is not None and result.transition.deploy:
        await _auto_deploy(ctx, service_id)
    return result


async def _auto_deploy(ctx: AppContext, service_id: uuid.UUID) -> None:
    """Deploy the moved tag for a service that opted in: a deploy like any other, in the name of the
    project's owner (deployments and their audit entries belong to a user), under their limits."""

    def owner(session: Session) -> Principal | None:
        row = session.execute(
            select(User.id, User.email)
            .join(Membership, Membership.user_id == User.id)
            .join(Service, Service.project_id == Membership.project_id)
            .where(Service.id == service_id, Membership.role == "owner")
            .order_by(User.created_at)
            .limit(1)
        ).first()
        return Principal(row[0], row[1]) if row is not None else None

    principal = await ctx.db.run(owner)
    if principal is None:
        log.warning("service %s: the tag moved, but its project has no owner to deploy as", service_id)
        return
    try:
        deployment = await deployments.start_deployment(ctx, principal, service_id=service_id)
    except GuaraError as exc:  # a deploy in progress, a limit: the notice stays, the next move retries
        log.warning("service %s: auto-deploy of the moved tag not started: %s", service_id, exc.message)
        return
    log.info("service %s: the tag moved; auto-deploy started deployment %s", service_id, deployment.id)


async def check_now(ctx: AppContext, principal: Principal, *, service_id: uuid.UUID) -> HealthView:
    """*Check now*: one check of the caller's service, counted against their Test Connection limit."""

    def load(session: Session) -> _Loaded | None:
        service = service_of(
            session, principal=principal, service_id=service_id, action=Action.CREDENTIALS_USE
        )
        return _load(ctx, session, service)

    loaded = await ctx.db.run(load)
    if loaded is None:
        raise InvalidInput(NO_CREDENTIALS, code="no_credentials")
    await count_preflight(ctx, principal)
    outcome = await _outcome(ctx, loaded)
    result = await ctx.db.run(
        lambda session: _record(
            ctx, session, service_id=service_id, loaded=loaded, outcome=outcome, now=utcnow(), actor=principal
        )
    )
    if result.health is None:
        raise Conflict("the credentials changed or were removed while they were checked; check again")
    ctx.webhooks.dispatch(ctx, result.transition)
    if result.transition is not None and result.transition.deploy:
        await _auto_deploy(ctx, service_id)
    return result.health
