"""Migration 0005 on rows made before it: plain members become developers, a project without an owner
gets its members as owners, the set-up account becomes the admin; and no row is lost either way."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from guara.store import Database
from guara.store.db import alembic_config

USERS = sa.table(
    "users",
    sa.column("id", sa.Uuid()),
    sa.column("email"),
    sa.column("password_hash"),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
PROJECTS = sa.table(
    "projects",
    sa.column("id", sa.Uuid()),
    sa.column("name"),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
MEMBERSHIPS = sa.table(
    "memberships", sa.column("project_id", sa.Uuid()), sa.column("user_id", sa.Uuid()), sa.column("role")
)
CLAIMS = sa.table(
    "setup_claims",
    sa.column("id"),
    sa.column("user_id", sa.Uuid()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _migrate(db: Database, revision: str, *, down: bool = False) -> None:
    with db.engine.begin() as conn:
        config = alembic_config(db.url)
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)


def test_existing_rows_get_roles_and_an_admin(database_url: str) -> None:
    db = Database(database_url)
    try:
        _migrate(db, "head")
        _migrate(db, "0003", down=True)
        now = datetime.now(UTC)
        first, second = uuid.uuid4(), uuid.uuid4()
        owned, ownerless = uuid.uuid4(), uuid.uuid4()
        with db.engine.begin() as conn:
            conn.execute(
                sa.insert(USERS),
                [
                    {"id": first, "email": "first@example.com", "password_hash": "x", "created_at": now},
                    {"id": second, "email": "second@example.com", "password_hash": "x", "created_at": now},
                ],
            )
            conn.execute(sa.insert(CLAIMS), [{"id": 1, "user_id": first, "created_at": now}])
            conn.execute(
                sa.insert(PROJECTS),
                [
                    {"id": owned, "name": "owned", "created_at": now},
                    {"id": ownerless, "name": "x", "created_at": now},
                ],
            )
            conn.execute(
                sa.insert(MEMBERSHIPS),
                [
                    {"project_id": owned, "user_id": first, "role": "owner"},
                    {"project_id": owned, "user_id": second, "role": "member"},
                    {"project_id": ownerless, "user_id": second, "role": "member"},
                ],
            )
        _migrate(db, "head")
        with db.engine.connect() as conn:
            roles = {
                (row.project_id, row.user_id): row.role
                for row in conn.execute(
                    sa.select(MEMBERSHIPS.c.project_id, MEMBERSHIPS.c.user_id, MEMBERSHIPS.c.role)
                )
            }
            admins: dict[str, object] = dict(conn.execute(sa.text("SELECT email, is_admin FROM users")).all())
        assert roles == {(owned, first): "owner", (owned, second): "developer", (ownerless, second): "owner"}
        assert {email: bool(flag) for email, flag in admins.items()} == {
            "first@example.com": True,
            "second@example.com": False,
        }
        # And back: every row stays (a rebuilt table would have cascaded its drop into its children).
        _migrate(db, "0003", down=True)
        with db.engine.connect() as conn:
            roles_before = sorted(conn.execute(sa.select(MEMBERSHIPS.c.role)).scalars())
        assert roles_before == ["member", "owner", "owner"]
    finally:
        _migrate(db, "head")
        db.dispose()
