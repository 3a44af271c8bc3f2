"""The health scheduler: re-checks every service's stored credentials once per interval
(``GUARA_HEALTH_INTERVAL``), in the background of ``guara serve``.

Several replicas may run it on one database. Each service's ``credential_health.next_check_at`` is
its lease: a scheduler claims a due service with one conditional UPDATE that moves the due time one
interval on (compare-and-set on the value it read), so exactly one replica checks it per interval,
with no lock service. Due times keep their phase (due + k·interval), so a service is checked once
per interval whatever the schedulers' ticks; a new service's first due time is jittered, which
spreads checks over the interval. A replica that dies after claiming loses that one check (the next
interval's is claimed again).

Checks run with bounded concurrency, one at a time per registry host, never counted against any
user's limit; services without credentials are never claimed. Time comes from a ``Clock``, so tests
drive rounds without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import anyio
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from guara.core import health_checks
from guara.core.deploy_runner import new_owner
from guara.core.health_checks import CheckResult
from guara.registry import parse_registry
from guara.secrets import secret_scope
from guara.store import UniqueViolation, flush
from guara.store.models import CredentialHealth, RegistryCredential, Service, utcnow

if TYPE_CHECKING:
    from guara.context import AppContext

log = logging.getLogger("guara.health")

DEFAULT_INTERVAL_S = 21600.0
DEFAULT_CONCURRENCY = 4
# A new service's first check comes this share of an interval early at most (spreads the checks).
JITTER = 0.1
# How often a scheduler looks for due services: often enough for short test intervals, at most a minute.
MAX_TICK_S = 60.0


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


@dataclass(frozen=True)
class Claim:
    service_id: uuid.UUID
    registry: str  # host[:port]: checks of one registry host run one at a time
    due: datetime


Check = Callable[["AppContext", uuid.UUID, datetime], Awaitable[CheckResult]]


async def _check(ctx: AppContext, service_id: uuid.UUID, now: datetime) -> CheckResult:
    return await health_checks.check_service(ctx, service_id=service_id, now=now)


def _host(registry: str) -> str:
    try:
        return parse_registry(registry, allow_http=True).host
    except ValueError:
        return registry


class HealthScheduler:
    def __init__(
        self,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        concurrency: int = DEFAULT_CONCURRENCY,
        clock: Clock | None = None,
        check: Check = _check,
        rng: random.Random | None = None,
        owner: str | None = None,
    ) -> None:
        self.interval = timedelta(seconds=interval_s)
        self.tick_s = min(MAX_TICK_S, max(0.2, interval_s / 10))
        self.concurrency = concurrency
        self.clock: Clock = clock or SystemClock()
        self.owner = owner or new_owner()
        self._check = check
        self._rng = rng or random.Random()  # noqa: S311  (spreading checks, not a secret)
        self._loops: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        # Called with each recorded check (notifications hook in here).
        self.on_checked: list[Callable[[CheckResult], Awaitable[None]]] = []

    # --- the loop -------------------------------------------------------------------------------

    def start(self, ctx: AppContext) -> None:
        """Run rounds every tick until ``aclose`` (one loop per event loop; idempotent)."""
        loop = asyncio.get_running_loop()
        task = self._loops.get(loop)
        if task is None or task.done():
            self._loops[loop] = loop.create_task(self._forever(ctx), name="guara-health-checks")

    async def _forever(self, ctx: AppContext) -> None:
        while True:
            try:
                await self.run_round(ctx)
            except Exception:  # an outage must not end the scheduler; the next round retries
                log.warning("credential health round failed", exc_info=True)
            await self.clock.sleep(self.tick_s)

    async def aclose(self) -> None:
        task = self._loops.pop(asyncio.get_running_loop(), None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # --- one round ------------------------------------------------------------------------------

    async def run_round(self, ctx: AppContext) -> list[CheckResult]:
        """Claim every service due now and check them; the recorded results."""
        now = self.clock.now()
        for service_id, project_id in await ctx.db.run(_without_health_row):
            with contextlib.suppress(UniqueViolation):  # another replica added it first
                await ctx.db.run(
                    functools.partial(_add_health_row, service_id=service_id, project_id=project_id)
                )
        claims = await ctx.db.run(lambda session: self.claim_due(session, now))
        if not claims:
            return []
        limit = asyncio.Semaphore(self.concurrency)
        hosts: dict[str, asyncio.Lock] = {}
        results: list[CheckResult] = []

        async def one(claim: Claim) -> None:
            host = hosts.setdefault(claim.registry, asyncio.Lock())
            async with host, limit:
                with secret_scope():  # the password opened for this check is scrubbed from its logs
                    try:
                        result = await self._check(ctx, claim.service_id, self.clock.now())
                    except Exception:
                        log.warning("credentials check of service %s failed", claim.service_id, exc_info=True)
                        return
                code = result.health.code if result.health is not None else None
                status = result.health.status if result.health is not None else "skipped"
                log.info(
                    "checked credentials of service %s (due %s): %s %s",
                    claim.service_id,
                    claim.due.isoformat(),
                    status,
                    code or "",
                )
                results.append(result)
                for hook in self.on_checked:
                    try:
                        await hook(result)
                    except Exception:
                        log.warning("a credential health hook failed", exc_info=True)

        async with anyio.create_task_group() as group:
            for claim in claims:
                group.start_soon(one, claim)
        return results

    def claim_due(self, session: Session, now: datetime) -> list[Claim]:
        """Claim (in the caller's transaction) every service with credentials that is due at ``now``."""
        self._schedule_new(session, now)
        rows = session.execute(
            select(
                CredentialHealth.service_id, CredentialHealth.next_check_at, RegistryCredential.registry_host
            )
            .join(RegistryCredential, RegistryCredential.service_id == CredentialHealth.service_id)
            .where(CredentialHealth.next_check_at.is_not(None), CredentialHealth.next_check_at <= now)
            .order_by(CredentialHealth.next_check_at)
        ).all()
        claims = []
        for service_id, due, registry in rows:
            if due is None:
                continue
            claimed = session.execute(
                update(CredentialHealth)
                .where(CredentialHealth.service_id == service_id, CredentialHealth.next_check_at == due)
                .values(next_check_at=self._next_due(due, now), checked_by=self.owner)
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0) == 1:
                claims.append(Claim(service_id, _host(registry), due))
        return claims

    def _next_due(self, due: datetime, now: datetime) -> datetime:
        """The first due time after ``now`` in the service's phase: missed intervals (every replica
        down) give one check, not one per interval missed."""
        after = due + self.interval
        if after <= now:
            after += self.interval * ((now - after) // self.interval + 1)
        return after

    def _schedule_new(self, session: Session, now: datetime) -> None:
        """Give services with new (or never scheduled) credentials their first, jittered due time."""
        unscheduled = session.scalars(
            select(CredentialHealth.service_id)
            .join(RegistryCredential, RegistryCredential.service_id == CredentialHealth.service_id)
            .where(CredentialHealth.next_check_at.is_(None))
        ).all()
        for service_id in unscheduled:
            first = now + self.interval * (1 - JITTER * self._rng.random())
            session.execute(
                update(CredentialHealth)
                .where(CredentialHealth.service_id == service_id, CredentialHealth.next_check_at.is_(None))
                .values(next_check_at=first)
                .execution_options(synchronize_session=False)
            )


def _without_health_row(session: Session) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Services with credentials saved before health was recorded (saves add the row)."""
    rows = session.execute(
        select(Service.id, Service.project_id)
        .join(RegistryCredential, RegistryCredential.service_id == Service.id)
        .outerjoin(CredentialHealth, CredentialHealth.service_id == Service.id)
        .where(CredentialHealth.service_id.is_(None))
    ).all()
    return [(service_id, project_id) for service_id, project_id in rows]


def _add_health_row(session: Session, *, service_id: uuid.UUID, project_id: uuid.UUID) -> None:
    session.add(CredentialHealth(service_id=service_id, project_id=project_id, message="", auto_deploy=False))
    flush(session)
