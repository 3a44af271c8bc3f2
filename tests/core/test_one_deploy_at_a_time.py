"""One deployment in progress per service, enforced by the database: several processes (here, several
application contexts on one database) racing to deploy the same service get exactly one."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from guara.context import AppContext
from guara.core import accounts, deployments, projects, services
from guara.core.accounts import Principal
from guara.core.deploy_runner import DeploymentRunner
from guara.core.errors import Conflict
from guara.store.models import Deployment
from tests.conftest import build_context
from tests.support import run


class _Recorder(DeploymentRunner):
    """A runner that only notes what it was given: the race is about the rows, not the work."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[uuid.UUID] = []

    def spawn(self, ctx: AppContext, deployment_id: uuid.UUID, principal: Principal) -> None:
        self.spawned.append(deployment_id)


def test_racing_deploys_from_several_processes_leave_one_in_progress(settings_env: dict[str, str]) -> None:
    contexts = [build_context(settings_env) for _ in range(4)]
    for context in contexts:
        context.deployments = _Recorder()
    first = contexts[0]
    owner = run(accounts.create_user, first, email="race@example.com", password="long enough pw")
    project = run(projects.create_project, first, owner, name="p")
    service = run(services.create_service, first, owner, project_id=project.id, name="s", image="busybox")

    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def deploy(context: AppContext) -> None:
        barrier.wait()
        try:
            run(deployments.start_deployment, context, owner, service_id=service.id)
            outcome = "started"
        except Conflict as exc:
            outcome = exc.code
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=deploy, args=(contexts[i % 4],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["deploy_in_progress"] * 7 + ["started"]
    with first.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Deployment)) == 1
    for context in contexts:
        context.close()


@pytest.fixture(autouse=True)
def _quiet_pool_warnings() -> None:
    return None
