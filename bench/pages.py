"""Server-side render time of the dashboard's pages on a project with 10,000 services (half with
credentials) and 1,000,000 audit entries, on SQLite or PostgreSQL.

Builds the project on a fresh database with the real use cases (credentials saved without verifying, so
no registry is needed; the audit entries beyond those are bulk-inserted, as bench/audit.py does), then
requests the project page (first and last page of services), a service's Overview, its Settings tab and
the project's audit log in-process (httpx.ASGITransport: no sockets) and prints p50/p95 per page
against the goal: p50 under 50 ms.

The project page's p95 is dominated by the cyclic garbage collector walking every live object of the
process (about 1,000 ORM rows are allocated per request); ``--gc-freeze`` moves the start-up objects
out of its reach with ``gc.freeze()``, as a server could after start-up, to show the difference.

Run: python -m bench.pages [--database sqlite|postgres] [--services 10000] [--audit-rows 1000000]
     [--rounds 50] [--gc-freeze]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio
import httpx
from bench.audit import add_audit_rows, postgres_database
from pydantic import SecretStr

from guara.app import create_app
from guara.config import Settings
from guara.context import AppContext
from guara.core import accounts, credentials, projects, services
from guara.core.accounts import Principal
from guara.core.services import SERVICES_PAGE
from guara.http.auth import SESSION_COOKIE
from guara.secrets import ensure_key_file

GOAL_P50_MS = 50.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def build_context(root: Path, database_url: str) -> AppContext:
    key_file = root / "master.key"
    ensure_key_file(key_file)
    settings = Settings(data_dir=root, database_url=database_url, master_key_file=key_file)
    context = AppContext.from_settings(settings)
    context.db.upgrade()
    return context


async def populate(context: AppContext, count: int) -> tuple[Principal, uuid.UUID, list[uuid.UUID], str]:
    owner = await accounts.create_user(context, email="bench@example.com", password="bench password")
    project = await projects.create_project(context, owner, name="bench")
    ids = []
    for i in range(count):
        created = await services.create_service(
            context, owner, project_id=project.id, name=f"svc-{i:05d}", image=f"ghcr.io/acme/svc-{i:05d}:v1"
        )
        ids.append(created.id)
    cookie = await accounts.sign_in(context, email=owner.email, password="bench password", client="bench")
    for service_id in ids[::2]:
        await credentials.save_credentials(
            context,
            owner,
            service_id=service_id,
            change=credentials.CredentialsChange("ghcr.io", "robot", SecretStr("bench-token")),
            skip_verification=True,
        )
    return owner, project.id, ids, cookie.cookie_value


async def measure(
    context: AppContext, pages: dict[str, str], cookie: str, rounds: int
) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in pages}
    transport = httpx.ASGITransport(app=create_app(context))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench.local", cookies={SESSION_COOKIE: cookie}
    ) as client:
        for name, path in pages.items():  # warm-up: templates compiled, connections opened
            response = await client.get(path)
            assert response.status_code == 200, (name, response.status_code)
        for _ in range(rounds):
            for name, path in pages.items():
                started = time.perf_counter()
                response = await client.get(path)
                timings[name].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--audit-rows", type=int, default=1_000_000, help="audit entries added in bulk")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() before measuring")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="guara-bench-pages-")))
        if args.database == "postgres":
            url = stack.enter_context(postgres_database())
            if url is None:
                return 1
        else:
            url = f"sqlite:///{tmp / 'guara.db'}"
        context = build_context(tmp, url)
        started = time.perf_counter()
        owner, project_id, ids, cookie = anyio.run(populate, context, args.services)
        add_audit_rows(
            context.db,
            args.audit_rows,
            project_id=project_id,
            other_project_id=project_id,
            actor_id=owner.user_id,
        )
        print(
            f"built 1 project, {args.services:,} services ({(args.services + 1) // 2:,} with credentials) and "
            f"{args.audit_rows:,} more audit entries in {time.perf_counter() - started:.1f} s on {args.database}"
        )
        names = sorted(f"svc-{i:05d}" for i in range(len(ids)))
        last_after = (
            names[-(len(names) % SERVICES_PAGE or SERVICES_PAGE) - 1] if len(names) > SERVICES_PAGE else ""
        )
        pages = {
            "project page": f"/projects/{project_id}",
            "project, last page": f"/projects/{project_id}?after={last_after}",
            "service overview": f"/services/{ids[0]}",
            "settings tab": f"/services/{ids[0]}/settings",
            "audit log": f"/projects/{project_id}/audit-logs",
        }
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        timings = anyio.run(measure, context, pages, cookie, args.rounds)
        context.db.dispose()
    print(f"{'page':<18} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}  goal p50 < {GOAL_P50_MS:.0f} ms")
    failed = False
    for name, values in timings.items():
        p50 = percentile(values, 0.5)
        ok = p50 < GOAL_P50_MS
        failed |= not ok
        print(
            f"{name:<18} {p50:8.1f} {percentile(values, 0.95):8.1f} {statistics.fmean(values):8.1f}  "
            f"{'ok' if ok else 'OVER GOAL'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
