"""Alembic environment: runs on the connection ``Database.upgrade`` hands over, one transaction."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from guara.store.models import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `guara db upgrade`")

sqlite = connection.dialect.name == "sqlite"
if sqlite:
    # Batch mode rebuilds an altered table (copy, drop, rename). With foreign keys enforced, dropping a
    # parent table (services, users) deletes its children's rows by cascade: off while migrating
    # (it only takes effect outside a transaction, which nothing has begun yet on this connection).
    # Database.upgrade discards the connection afterwards; nothing reuses it with the check off.
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=sqlite,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"the migration left rows without their parent: {broken[:5]}")
