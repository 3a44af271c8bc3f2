"""Audit log reads at a million rows: first page, a deep keyset page and an action filter, on SQLite
and (when reachable) PostgreSQL, against the raw indexed SQL for the same page in the same run.

Run: python bench/audit.py [--rows N]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guara.config import Settings
from guara.context import AppContext
from guara.core import audit
from guara.core.accounts import Principal
from guara.store import Database
from guara.store.models import AuditLog, Membership, Project, User

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def median_ms(run: Callable[[], object], repeat: int = 30) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def seed(db: Database, rows: int) -> tuple[Principal, uuid.UUID]:
    db.upgrade()
    user_id, project_id, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with db.session() as session:
        session.add(User(id=user_id, email="bench@example.com", password_hash="x"))
        session.add_all([Project(id=project_id, name="bench"), Project(id=other, name="noise")])
        session.flush()
        session.add(Membership(project_id=project_id, user_id=user_id, role="owner"))
    add_audit_rows(db, rows, project_id=project_id, other_project_id=other, actor_id=user_id)
    return Principal(user_id, "bench@example.com"), project_id


def add_audit_rows(
    db: Database, rows: int, *, project_id: uuid.UUID, other_project_id: uuid.UUID, actor_id: uuid.UUID
) -> None:
    """``rows`` audit entries, half of them the project's: two projects interleaved, so the index has
    to skip the other one's rows. Bulk inserts: what is measured is reading them."""
    now = datetime.now(UTC)
    batch = 20_000
    for start in range(0, rows, batch):
        with db.session() as session:
            session.execute(
                insert(AuditLog),
                [
                    {
                        "project_id": project_id if i % 2 else other_project_id,
                        "actor_id": actor_id,
                        "actor_email": "bench@example.com",
                        "action": "service.update" if i % 10 else "service.deploy",
                        "target_type": "service",
                        "target_id": str(uuid.uuid4()),
                        "target_name": f"svc-{i % 1000}",
                        "details": {"credentials": "updated", "registry": "ghcr.io", "preflight": "passed"},
                        "created_at": now,
                    }
                    for i in range(start, min(rows, start + batch))
                ],
            )


@contextlib.contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for one benchmark, dropped afterwards; None when unreachable."""
    try:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        name = f"guara_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"PostgreSQL skipped: {type(exc).__name__}")
        yield None
        return
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def measure(name: str, url: str, rows: int, data_dir: Path) -> None:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    context = AppContext.from_settings(Settings(database_url=url, master_key=key, data_dir=data_dir))
    db = context.db
    started = time.perf_counter()
    principal, project_id = seed(db, rows)
    print(f"{name}: seeded {rows:,} audit rows in {time.perf_counter() - started:.1f} s")

    def page(cursor: str | None = None, action: str | None = None) -> audit.AuditPage:
        return anyio.run(
            functools.partial(
                audit.list_entries, context, principal, project_id=project_id, cursor=cursor, action=action
            )
        )

    deep_cursor = str(rows // 2)
    raw_sql = text("SELECT * FROM audit_logs WHERE project_id = :p AND id < :c ORDER BY id DESC LIMIT 51")
    pid = project_id.hex if db.is_sqlite else project_id

    def raw() -> None:
        with db.engine.connect() as conn:
            conn.execute(raw_sql, {"p": pid, "c": int(deep_cursor)}).all()

    first = median_ms(page)
    deep = median_ms(lambda: page(deep_cursor))
    filtered = median_ms(lambda: page(deep_cursor, "service.deploy"))
    lower = median_ms(raw)
    print(f"  first page {first:.2f} ms · deep page {deep:.2f} ms · deep page filtered {filtered:.2f} ms")
    print(f"  raw indexed SQL for the deep page {lower:.2f} ms · ratio deep/raw {deep / lower:.2f}")
    context.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as tmp:
        measure("SQLite", f"sqlite:///{tmp}/bench.db", rows, Path(tmp))
    with postgres_database() as url:
        if url is not None:
            with tempfile.TemporaryDirectory() as tmp:
                measure("PostgreSQL", url, rows, Path(tmp))


if __name__ == "__main__":
    main()
