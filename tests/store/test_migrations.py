"""Migrations: upgrade from empty, idempotent, match the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from guara.context import AppContext
from guara.store import Database, DatabaseUnavailable
from guara.store.models import Base


def test_upgrade_is_idempotent_and_matches_models(context: AppContext) -> None:
    context.db.upgrade()
    with context.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_unreachable_database_names_url_without_password() -> None:
    db = Database("postgresql://guara:s3cret-pw@127.0.0.1:1/guara")
    with pytest.raises(DatabaseUnavailable) as caught:
        db.check()
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)
