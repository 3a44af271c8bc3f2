"""The health scheduler on a real database (SQLite and PostgreSQL) with an injected clock: every
service with credentials is checked exactly once per interval, whichever of several schedulers
claims it; services without credentials never; one check at a time per registry host, bounded
concurrency."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from guara.context import AppContext
from guara.core import accounts, projects, services
from guara.core.accounts import Principal
from guara.core.credentials import CredentialsChange
from guara.core.health_checks import CheckResult
from guara.core.health_scheduler import HealthScheduler
from tests.support import run

INTERVAL_S = 21600.0
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


def _owner(context: AppContext) -> Principal:
    return run(accounts.create_user, context, email="owner@example.com", password="long enough pw")


def _services(
    context: AppContext, owner: Principal, images: list[str], *, with_credentials: bool
) -> list[str]:
    project = run(projects.create_project, context, owner, name=f"p{uuid.uuid4().hex[:6]}")
    made = []
    for number, image in enumerate(images):
        registry = image.split("/", 1)[0]
        login = CredentialsChange(registry, "robot", SecretStr("robot-secret")) if with_credentials else None
        view = run(
            services.create_service,
            context,
            owner,
            project_id=project.id,
            name=f"s{number}",
            image=image,
            registry_credentials=login,
            skip_verification=True,
        )
        made.append(str(view.id))
    return made


def test_two_schedulers_check_each_service_exactly_once_per_interval(context: AppContext) -> None:
    owner = _owner(context)
    hosts = ["ghcr.io", "quay.io", "registry.gitlab.com"]
    checked = _services(
        context, owner, [f"{hosts[n % 3]}/acme/app{n}:v1" for n in range(7)], with_credentials=True
    )
    anonymous = _services(context, owner, ["ghcr.io/acme/public:v1"], with_credentials=False)
    clock = FakeClock(START)
    seen: list[tuple[str, str]] = []  # (scheduler, service)

    def counting(name: str):  # type: ignore[no-untyped-def]
        async def check(_ctx: AppContext, service_id: uuid.UUID, _now: datetime) -> CheckResult:
            seen.append((name, str(service_id)))
            await asyncio.sleep(0)
            return CheckResult(None, None)

        return check

    a = HealthScheduler(interval_s=INTERVAL_S, clock=clock, check=counting("a"), rng=random.Random(1))
    b = HealthScheduler(interval_s=INTERVAL_S, clock=clock, check=counting("b"), rng=random.Random(2))

    async def both_rounds() -> None:
        await asyncio.gather(a.run_round(context), b.run_round(context))

    run(both_rounds)  # schedules the first (jittered) checks; none is due yet
    assert seen == []
    for _interval in range(4):
        clock.advance(INTERVAL_S)
        run(both_rounds)
        run(both_rounds)  # a second tick within the same interval claims nothing
        counts = Counter(service for _name, service in seen)
        assert counts == Counter({service: 1 for service in checked})
        assert not set(anonymous) & set(counts)
        seen.clear()


def test_missed_intervals_give_one_check_and_keep_the_phase(context: AppContext) -> None:
    [service] = _services(context, _owner(context), ["ghcr.io/acme/app:v1"], with_credentials=True)
    clock = FakeClock(START)
    seen: list[str] = []

    async def check(_ctx: AppContext, service_id: uuid.UUID, _now: datetime) -> CheckResult:
        seen.append(str(service_id))
        return CheckResult(None, None)

    scheduler = HealthScheduler(interval_s=INTERVAL_S, clock=clock, check=check)
    run(scheduler.run_round, context)
    clock.advance(INTERVAL_S * 5)  # every replica was down for five intervals
    run(scheduler.run_round, context)
    run(scheduler.run_round, context)
    assert seen == [service]
    clock.advance(INTERVAL_S)
    run(scheduler.run_round, context)
    assert seen == [service, service]


def test_one_check_at_a_time_per_registry_host_and_bounded_overall(context: AppContext) -> None:
    hosts = [f"registry{n}.example.com" for n in range(5)]
    images = [f"{host}/acme/app{n}:v1" for host in hosts for n in range(3)]
    made = _services(context, _owner(context), images, with_credentials=True)
    host_of = {service: image.split("/", 1)[0] for service, image in zip(made, images, strict=True)}
    clock = FakeClock(START)
    running: Counter[str] = Counter()
    most_per_host = 0
    most_overall = 0

    async def check(_ctx: AppContext, service_id: uuid.UUID, _now: datetime) -> CheckResult:
        nonlocal most_per_host, most_overall
        host = host_of[str(service_id)]
        running[host] += 1
        most_per_host = max(most_per_host, running[host])
        most_overall = max(most_overall, sum(running.values()))
        for _ in range(5):
            await asyncio.sleep(0)
        running[host] -= 1
        return CheckResult(None, None)

    scheduler = HealthScheduler(interval_s=INTERVAL_S, concurrency=3, clock=clock, check=check)
    run(scheduler.run_round, context)
    clock.advance(INTERVAL_S)
    run(scheduler.run_round, context)
    assert most_per_host == 1
    assert most_overall == 3


@pytest.mark.parametrize("interval", ["0", "-5", "six hours"])
def test_health_interval_must_be_a_positive_number(interval: str) -> None:
    from pydantic import ValidationError

    from guara.config import Settings

    with pytest.raises(ValidationError):
        Settings(health_interval=interval)
