"""The engine guara builds for each kind of database URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from guara.store.db import SQLITE_POOL_SIZE, Database


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_works(url: str) -> None:
    database = Database(url)
    try:
        with database.session() as session:
            assert session.execute(text("SELECT 1")).scalar() == 1
    finally:
        database.dispose()


def test_a_sqlite_file_keeps_a_connection_per_worker_thread(tmp_path: Path) -> None:
    """No unit of work waits for a connection, or opens and closes one, while worker threads are free."""
    database = Database(f"sqlite:///{tmp_path / 'guara.db'}")
    try:
        assert database.engine.pool.size() == SQLITE_POOL_SIZE  # type: ignore[attr-defined]
        with database.session() as session:
            assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        database.dispose()
