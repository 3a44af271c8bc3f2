"""Deleting services and projects: the sealed credentials are destroyed (gone from the database file
and from a pg_dump), the audit entries and, for owners, the deployment history stay."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select, text

from guara.context import AppContext
from guara.core.access import service_of
from guara.core.roles import Action
from guara.store import flush
from guara.store.models import AuditLog, Deployment, RegistryCredential
from tests.support import ApiUser
from tests.web.support import principal_of

IMAGE = "127.0.0.1:1/acme/api:v1"  # nothing listens: deploys fail fast, on loopback


def _with_canary(client: ApiUser, project_id: str, canary: str, name: str = "api") -> str:
    created = client.post(
        f"/projects/{project_id}/services",
        json={
            "name": name,
            "image": IMAGE,
            "registry_credentials": {"registry": "127.0.0.1:1", "username": "robot", "password": canary},
            "skip_verification": True,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _envelope(context: AppContext, service_id: str) -> str:
    with context.db.session() as session:
        row = session.get(RegistryCredential, uuid.UUID(service_id))
        assert row is not None
        return row.password_sealed


def _stored_bytes(context: AppContext, settings_env: dict[str, str]) -> dict[str, bytes]:
    """Every byte the database holds: the SQLite files after VACUUM and a checkpoint, or a pg_dump."""
    url = settings_env["GUARA_DATABASE_URL"]
    if url.startswith("sqlite"):
        context.db.dispose()
        path = url.split("///", 1)[1]
        with sqlite3.connect(path) as conn:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        files = Path(path).parent.glob(Path(path).name + "*")
        return {str(f): f.read_bytes() for f in files}
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    dump_url = url.replace("postgresql+psycopg://", "postgresql://")
    return {"pg_dump": subprocess.run(["pg_dump", dump_url], capture_output=True, check=True).stdout}


def _wait_idle(client: ApiUser, service_id: str) -> None:
    deadline = time.monotonic() + 30
    while any(
        d["status"] in ("pending", "resolving", "starting")
        for d in client.get(f"/services/{service_id}/deployments").json()
    ):
        assert time.monotonic() < deadline, "the deployment did not end"
        time.sleep(0.05)


def test_a_deleted_service_leaves_no_envelope_and_keeps_its_history(
    client: ApiUser, context: AppContext, settings_env: dict[str, str]
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    project_id = client.project()
    service_id = _with_canary(client, project_id, canary)
    developer = ApiUser.sign_up(client.http, context, "dev@example.com")
    client.post(f"/projects/{project_id}/members", json={"email": developer.email, "role": "developer"})
    envelope = _envelope(context, service_id)
    assert client.post(f"/services/{service_id}/deployments").status_code == 202
    _wait_idle(client, service_id)
    assert any(envelope.encode() in data for data in _stored_bytes(context, settings_env).values())

    refused = developer.delete(f"/services/{service_id}")
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert client.delete(f"/services/{service_id}").status_code == 204

    leaks = [name for name, data in _stored_bytes(context, settings_env).items() if envelope.encode() in data]
    assert leaks == []
    assert client.get(f"/services/{service_id}").status_code == 404
    assert client.get(f"/projects/{project_id}/services").json() == []
    assert client.delete(f"/services/{service_id}").status_code == 404
    # The history stays, for owners.
    history = client.get(f"/services/{service_id}/deployments")
    assert history.status_code == 200 and len(history.json()) == 1
    assert developer.get(f"/services/{service_id}/deployments").status_code == 403
    entries = client.get(f"/projects/{project_id}/audit-logs").json()["entries"]
    assert [e["action"] for e in entries if e["target_type"] == "service"][:3] == [
        "service.delete",
        "service.deploy",
        "service.create",
    ]
    deleted = entries[0]
    assert deleted["target_name"] == "api" and deleted["details"]["credentials"] == "deleted"
    assert canary not in client.get(f"/projects/{project_id}/audit-logs").text
    # The name is free again.
    assert client.service(project_id, name="api", image=IMAGE)


def test_a_project_with_services_is_deleted_only_with_cascade(
    client: ApiUser, context: AppContext, settings_env: dict[str, str]
) -> None:
    project_id = client.project()
    first = _with_canary(client, project_id, f"canary-{uuid.uuid4().hex}", name="one")
    envelope = _envelope(context, first)
    client.service(project_id, name="two", image=IMAGE)
    kept = client.project("kept")

    refused = client.delete(f"/projects/{project_id}")
    assert (refused.status_code, refused.json()["code"]) == (409, "project_not_empty")
    assert client.get(f"/services/{first}").status_code == 200
    assert client.delete(f"/projects/{project_id}?cascade=true").status_code == 204

    assert client.get(f"/projects/{project_id}").status_code == 404
    assert [p["id"] for p in client.get("/projects").json()] == [kept]
    assert client.get(f"/services/{first}").status_code == 404
    assert client.delete(f"/projects/{project_id}?cascade=true").status_code == 404
    with context.db.session() as session:
        actions = list(
            session.scalars(
                select(AuditLog.action)
                .where(AuditLog.project_id == uuid.UUID(project_id))
                .order_by(AuditLog.id)
            )
        )
    assert actions == [
        "service.create",
        "service.create",
        "service.delete",
        "service.delete",
        "project.delete",
    ]
    leaks = [name for name, data in _stored_bytes(context, settings_env).items() if envelope.encode() in data]
    assert leaks == []


def test_an_empty_project_is_deleted_by_its_owners_only(client: ApiUser, context: AppContext) -> None:
    project_id = client.project()
    developer = ApiUser.sign_up(client.http, context, "dev@example.com")
    client.post(f"/projects/{project_id}/members", json={"email": developer.email, "role": "developer"})
    refused = developer.delete(f"/projects/{project_id}")
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert client.delete(f"/projects/{project_id}").status_code == 204
    assert developer.get(f"/projects/{project_id}").status_code == 404


def test_a_service_is_not_deleted_while_it_deploys(client: ApiUser, context: AppContext) -> None:
    project_id = client.project()
    service_id = client.service(project_id, image=IMAGE)
    with context.db.session() as session:
        session.add(
            Deployment(
                service_id=uuid.UUID(service_id),
                project_id=uuid.UUID(project_id),
                status="resolving",
                image=IMAGE,
                platform="linux/amd64",
            )
        )
    busy = client.delete(f"/services/{service_id}")
    assert (busy.status_code, busy.json()["code"]) == (409, "deploy_in_progress")
    assert client.get(f"/services/{service_id}").status_code == 200


def test_a_deploy_being_started_holds_off_a_deletion(
    client: ApiUser, context: AppContext, database_url: str
) -> None:
    """A deploy inserted but not yet committed holds its service row: the deletion waits for it, then
    sees it and refuses, instead of deleting a service that is about to run."""
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite runs one writer at a time")
    project_id = client.project()
    service_id = client.service(project_id, image=IMAGE)
    owner = principal_of(context, client.email)
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        with context.db.session() as starting:
            service_of(
                starting,
                principal=owner,
                service_id=uuid.UUID(service_id),
                action=Action.DEPLOY,
                share_lock=True,
            )
            starting.add(
                Deployment(
                    service_id=uuid.UUID(service_id),
                    project_id=uuid.UUID(project_id),
                    status="pending",
                    image=IMAGE,
                    platform="linux/amd64",
                )
            )
            flush(starting)
            deleting = pool.submit(client.delete, f"/services/{service_id}")
            _until_a_backend_waits_on_a_lock(context)
        answer = deleting.result(timeout=60)
    finally:
        pool.shutdown()
    assert (answer.status_code, answer.json()["code"]) == (409, "deploy_in_progress")
    assert client.get(f"/services/{service_id}").status_code == 200


def _until_a_backend_waits_on_a_lock(context: AppContext) -> None:
    deadline = time.monotonic() + 30
    with context.db.engine.connect() as conn:
        while not conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        ).scalar():
            assert time.monotonic() < deadline, "the deletion never waited for the deploy"
            time.sleep(0.05)
            conn.rollback()
