"""Persistence: SQLAlchemy models, sessions and Alembic migrations."""

from guara.store.db import ConcurrentUpdate, Database, DatabaseUnavailable, UniqueViolation, flush

__all__ = ["ConcurrentUpdate", "Database", "DatabaseUnavailable", "UniqueViolation", "flush"]
