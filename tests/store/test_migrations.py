"""Migrations: upgrade from empty, idempotent, match the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from guara.context import AppContext
from guara.store import Database, DatabaseUnavailable
from guara.store.db import alembic_config
from guara.store.models import Base, RegistryCredential
from tests.support import ApiUser


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


def test_0004_existing_credentials_become_password_kind(client: ApiUser, context: AppContext) -> None:
    project_id = client.project()
    service_id = client.service(project_id, image="127.0.0.1:1/acme/api:v1")
    saved = client.put(
        f"/services/{service_id}/registry-credentials",
        json={"registry": "127.0.0.1:1", "username": "u", "password": "p", "skip_verification": True},
    )
    assert saved.status_code == 200, saved.text
    with context.db.engine.begin() as conn:
        config = alembic_config(context.db.url)
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
        assert "kind" not in {c["name"] for c in inspect(conn).get_columns("registry_credentials")}
    context.db.upgrade()
    with context.db.session() as session:
        row = session.scalars(select(RegistryCredential)).one()
        assert (row.kind, row.username, row.aws_region, row.aws_role_arn) == ("password", "u", None, None)
    assert client.get(f"/services/{service_id}").json()["registry_credentials"]["kind"] == "password"
