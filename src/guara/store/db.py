"""Engine, sessions and migrations. SQLAlchemy errors are translated here and nowhere else."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from guara.config import redact_url

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_POOL_SIZE = 40


class DatabaseUnavailable(Exception):
    """The database cannot be reached or used; the message names the URL without its password."""


class UniqueViolation(Exception):
    """An insert or update hit a unique constraint (the caller turns it into a conflict)."""


class ConcurrentUpdate(Exception):
    """A versioned row changed since it was read (optimistic locking: the caller reloads or gives up)."""


def _normalise_url(url: str) -> str:
    # Users write postgresql://; psycopg 3 is the driver we ship.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Database:
    def __init__(self, url: str) -> None:
        self.url = _normalise_url(url)
        self.display_url = redact_url(self.url)
        self.is_sqlite = self.url.startswith("sqlite")
        # A server's connections can drop while pooled: ping them. A SQLite file cannot: no ping.
        kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": not self.is_sqlite}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            path = make_url(self.url).database  # None or ":memory:" for an in-memory database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                # Every worker thread of the pool ``run`` uses (anyio's: 40) may hold a connection at
                # once. SQLAlchemy's default (5 + 10 overflow) made the rest wait, and opened and
                # closed an overflow connection (with its pragmas) per unit of work under load.
                kwargs["pool_size"] = SQLITE_POOL_SIZE
                kwargs["max_overflow"] = 10
        else:
            kwargs["connect_args"] = {"connect_timeout": 5}
            kwargs["pool_size"] = 10
            kwargs["max_overflow"] = 20
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: commits on success, rolls back on any error."""
        with self._sessions() as session, translate_errors(self.display_url):
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a worker thread, in one unit of work: the event loop never waits on SQL.

        The one way use cases reach the database."""

        def unit() -> T:
            with self.session() as session:
                return work(session)

        return await anyio.to_thread.run_sync(unit)

    def check(self) -> None:
        with translate_errors(self.display_url), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def upgrade(self) -> None:
        """Migrate to head. On PostgreSQL an advisory lock keeps two starting processes apart."""
        with translate_errors(self.display_url), self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.execute(text("SET lock_timeout = '10s'"))
                conn.execute(text("SELECT pg_advisory_xact_lock(724101)"))
            config = alembic_config(self.url)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        if self.is_sqlite:
            # The migrations ran with foreign keys off (see migrations/env.py): no connection of that
            # session is reused; new ones are opened with the check on.
            self.engine.dispose()

    def dispose(self) -> None:
        self.engine.dispose()


def flush(session: Session) -> None:
    """Flush now, so a unique-constraint violation or a stale versioned row surfaces here (as
    UniqueViolation or ConcurrentUpdate) rather than at commit."""
    with translate_errors("the database"):
        session.flush()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@contextlib.contextmanager
def translate_errors(display_url: str) -> Iterator[None]:
    try:
        yield
    except IntegrityError as exc:
        raise UniqueViolation(str(exc.orig).splitlines()[0] if exc.orig else "constraint") from None
    except StaleDataError as exc:
        raise ConcurrentUpdate(str(exc).splitlines()[0][:200]) from None
    except OperationalError as exc:
        raise DatabaseUnavailable(f"database {display_url} is not usable: {_first_line(exc)}") from None
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"database {display_url} failed: {_first_line(exc)}") from None


def _first_line(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return (str(orig) if orig else str(exc)).strip().splitlines()[0][:200]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode, NORMAL syncs at checkpoints instead of every commit: a crash of guara loses nothing;
    # a power loss may lose the last commits, never the database (SQLite's documented guarantee).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
