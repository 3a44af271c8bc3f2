"""Shared fixtures for the whole suite: databases (SQLite and PostgreSQL), platforms, API clients."""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from guara.config import Settings
from guara.context import AppContext
from guara.store.models import Base
from tests.support import ApiUser, make_client

# Suite-wide plugins: the registry lab (real registries on loopback) and the socket audit.
pytest_plugins = ["tests.lab.fixtures", "tests.socket_audit"]

REDIS_URL = os.environ.get("GUARA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ADMIN_URL = os.environ.get("GUARA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated once, dropped at the end."""
    problem = _postgres_reachable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {problem}")
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL}: {problem}")
    name = f"guara_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    from guara.store import Database

    Database(url).upgrade()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that asks for it runs twice: on a fresh SQLite file and on a clean PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'guara.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate(url)
    return url


@pytest.fixture
def master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def settings_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """Environment for a guara process (CLI or server) on this test's database and data dir."""
    from guara.secrets import ensure_key_file

    key_file = tmp_path / "data" / "master.key"
    ensure_key_file(key_file)
    return {
        "GUARA_DATA_DIR": str(tmp_path / "data"),
        "GUARA_DATABASE_URL": database_url,
        "GUARA_MASTER_KEY_FILE": str(key_file),
        "GUARA_SSRF_ALLOW": "127.0.0.0/8",
        # Deterministic whatever engine sockets this machine has (engine tests set their own).
        "GUARA_RUNTIME": "render",
    }


def build_context(env: dict[str, str]) -> AppContext:
    settings = Settings(**{k.removeprefix("GUARA_").lower(): v for k, v in env.items()})  # type: ignore[arg-type]
    context = AppContext.from_settings(settings)
    context.db.upgrade()
    return context


@pytest.fixture
def context(settings_env: dict[str, str]) -> Iterator[AppContext]:
    context = build_context(settings_env)
    yield context
    context.db.dispose()


@pytest.fixture
def client(context: AppContext) -> Iterator[ApiUser]:
    """An API client signed in as a fresh user (bearer token)."""
    with make_client(context) as test_client:
        yield ApiUser.sign_up(test_client, context, "owner@example.com")


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis; required in CI, skipped with the reason elsewhere."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is required in CI and is not reachable: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    return REDIS_URL
