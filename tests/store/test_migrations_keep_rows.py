"""Upgrading an existing installation loses no row. On SQLite, Alembic's batch mode rebuilds a table it
alters (create a copy, drop the old one): with foreign keys enforced, dropping a parent table such as
``services`` would cascade into its children (credentials, deployments) and delete them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from guara.store import Database
from guara.store.db import alembic_config


def _migrate(db: Database, revision: str, *, down: bool = False) -> None:
    with db.engine.begin() as conn:
        config = alembic_config(db.url)
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)


def _count(db: Database, table: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_upgrading_from_the_first_releases_keeps_credentials_and_deployments(database_url: str) -> None:
    db = Database(database_url)
    try:
        _migrate(db, "head")  # the session's PostgreSQL database is at head already: go back
        _migrate(db, "0002", down=True)
        tables = sa.MetaData()
        tables.reflect(
            db.engine,
            only=["users", "projects", "memberships", "services", "registry_credentials", "deployments"],
        )
        now = datetime.now(UTC)
        # What the reflected columns take: SQLite keeps UUIDs as 32 hex characters.
        ids = [uuid.uuid4() for _ in range(4)]
        user, project, service, deployment = (i.hex if db.is_sqlite else i for i in ids)
        rows: dict[str, dict[str, object]] = {
            "users": {"id": user, "email": "old@example.com", "password_hash": "x", "created_at": now},
            "projects": {"id": project, "name": "old", "created_at": now},
            "memberships": {"project_id": project, "user_id": user, "role": "owner"},
            "services": {
                "id": service,
                "project_id": project,
                "name": "api",
                "build_method": "docker_image",
                "image": "ghcr.io/acme/api:v1",
                "platform": "linux/amd64",
                "version": 1,
                "created_at": now,
                "updated_at": now,
            },
            "registry_credentials": {
                "service_id": service,
                "project_id": project,
                "registry": "ghcr.io",
                "username": "octocat",
                "password_sealed": "v1.sealed-envelope",
                "key_version": 1,
                "verification": "passed",
                "updated_at": now,
            },
            "deployments": {
                "id": deployment,
                "service_id": service,
                "project_id": project,
                "status": "succeeded",
                "image": "ghcr.io/acme/api:v1",
                "platform": "linux/amd64",
                "message": "rendered",
                "with_credentials": True,
                "created_at": now,
                "updated_at": now,
            },
        }
        with db.engine.begin() as conn:
            for table, row in rows.items():
                conn.execute(sa.insert(tables.tables[table]), [row])
        _migrate(db, "head")
        assert {table: _count(db, table) for table in rows} == dict.fromkeys(rows, 1)
    finally:
        db.dispose()


def test_after_upgrading_sqlite_enforces_foreign_keys_again(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/guara.db")
    try:
        db.upgrade()
        with db.session() as session:
            assert session.execute(sa.text("PRAGMA foreign_keys")).scalar_one() == 1
    finally:
        db.dispose()
