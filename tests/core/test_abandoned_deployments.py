"""Deployments a stopped process left unfinished are ended at the next start, and only those."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from guara.context import AppContext
from guara.core import accounts, deploy_runner, projects, services
from guara.store.models import AuditLog, Deployment, utcnow
from tests.support import run


def test_only_stale_active_deployments_are_failed(context: AppContext) -> None:
    owner = run(accounts.create_user, context, email="d@example.com", password="long enough pw")
    project = run(projects.create_project, context, owner, name="p")
    service = run(services.create_service, context, owner, project_id=project.id, name="s", image="busybox")
    with context.db.session() as session:
        rows = {}
        for name, status, age in [
            ("stale", "resolving", 20),
            ("fresh", "pending", 1),
            ("done", "succeeded", 30),
        ]:
            rows[name] = Deployment(
                service_id=service.id,
                project_id=project.id,
                status=status,
                image=service.image,
                platform="linux/amd64",
                created_by=owner.user_id,
                updated_at=utcnow() - timedelta(minutes=age),
            )
            session.add(rows[name])
    assert run(deploy_runner.fail_abandoned, context) == 1
    with context.db.session() as session:
        status = {r.id: (r.status, r.code) for r in session.scalars(select(Deployment))}
        audits = session.scalars(select(AuditLog).where(AuditLog.action == "service.deploy")).all()
    assert status[rows["stale"].id] == ("failed", "interrupted")
    assert status[rows["fresh"].id] == ("pending", None)
    assert status[rows["done"].id] == ("succeeded", None)
    assert [(a.actor_email, a.details["code"]) for a in audits] == [("d@example.com", "interrupted")]
