"""Deployments whose process is gone are ended as interrupted by any process, and only those: a lease
that ran out, or an owner on this host that no longer runs."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import select

from guara.context import AppContext
from guara.core import accounts, deploy_runner, projects, services
from guara.store.models import AuditLog, Deployment, utcnow
from tests.support import run


def _dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def test_only_deployments_of_gone_processes_are_ended(context: AppContext) -> None:
    owner = run(accounts.create_user, context, email="d@example.com", password="long enough pw")
    project = run(projects.create_project, context, owner, name="p")
    here = socket.gethostname()
    live = context.deployments.owner
    cases = {
        # name: (status, lease owner, seconds since the last heartbeat)
        "lease ran out": ("resolving", "elsewhere/1/aaaa", 20),
        "fresh elsewhere": ("pending", "elsewhere/1/bbbb", 1),
        "gone from this host": ("resolving", f"{here}/{_dead_pid()}/cccc", 1),
        "this process": ("starting", live, 1),
        "finished long ago": ("succeeded", "elsewhere/1/dddd", 3600),
    }
    rows = {}
    with context.db.session() as session:
        for index, (name, (status, lease_owner, age)) in enumerate(cases.items()):
            service = run(
                services.create_service,
                context,
                owner,
                project_id=project.id,
                name=f"s{index}",
                image="busybox",
            )
            rows[name] = Deployment(
                service_id=service.id,
                project_id=project.id,
                status=status,
                image=service.image,
                platform="linux/amd64",
                created_by=owner.user_id,
                owner=lease_owner,
                heartbeat_at=utcnow() - timedelta(seconds=age),
            )
            session.add(rows[name])
    assert run(deploy_runner.sweep_abandoned, context, lease_s=15) == 2
    with context.db.session() as session:
        ended = {r.id: (r.status, r.code) for r in session.scalars(select(Deployment))}
        audits = session.scalars(select(AuditLog).where(AuditLog.action == "service.deploy")).all()
    assert ended[rows["lease ran out"].id] == ("failed", "interrupted")
    assert ended[rows["gone from this host"].id] == ("failed", "interrupted")
    assert ended[rows["fresh elsewhere"].id] == ("pending", None)
    assert ended[rows["this process"].id] == ("starting", None)
    assert ended[rows["finished long ago"].id] == ("succeeded", None)
    assert (
        sorted((a.actor_email, a.details["code"]) for a in audits) == [("d@example.com", "interrupted")] * 2
    )
