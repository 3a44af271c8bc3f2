"""Persistence: SQLAlchemy models, sessions and Alembic migrations."""

from guara.store.db import Database, DatabaseUnavailable

__all__ = ["Database", "DatabaseUnavailable"]
