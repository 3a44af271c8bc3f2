"""Two `guara serve` processes on one PostgreSQL re-check stored credentials in the background
(GUARA_HEALTH_INTERVAL of 3 s): over several intervals each service is checked exactly once per
interval, by one of them. Each check's log line names the due time it was claimed for; the due times
of a service must be unique across both processes and one interval apart, with none skipped."""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from guara.core import accounts, projects, services
from guara.core.credentials import CredentialsChange
from tests.conftest import build_context
from tests.lab import ALICE_PASSWORD, Lab
from tests.support import run, serving

pytestmark = pytest.mark.lab

INTERVAL_S = 3  # ticks every 0.3 s: a replica would have to stall a whole interval to skip one
CHECKS_PER_SERVICE = 4
CHECKED = re.compile(r"checked credentials of service (\S+) \(due (\S+)\): (\w+)")


def _checks(*logs: Path) -> dict[str, list[tuple[datetime, str]]]:
    found: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for log in logs:
        for service, due, status in CHECKED.findall(log.read_text()):
            found[service].append((datetime.fromisoformat(due), status))
    return found


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_replicas_check_each_service_once_per_interval(
    settings_env: dict[str, str], lab: Lab, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GUARA_")},
        **settings_env,
        "GUARA_EXTRA_CA_FILE": str(lab.ca_file),
        "GUARA_HEALTH_INTERVAL": str(INTERVAL_S),
        "GUARA_LOG_LEVEL": "debug",  # the password goes through every check: it must not show
    }
    arrange = build_context(settings_env)
    owner = run(accounts.create_user, arrange, email="replicas@example.com", password="long enough pw")
    project = run(projects.create_project, arrange, owner, name="p")
    ids = []
    for number in range(3):
        login = CredentialsChange(lab.basic.host, "alice", SecretStr(ALICE_PASSWORD))
        view = run(
            services.create_service,
            arrange,
            owner,
            project_id=project.id,
            name=f"s{number}",
            image=lab.basic.ref("acme/api:v1"),
            registry_credentials=login,
            skip_verification=True,
        )
        ids.append(str(view.id))
    arrange.close()
    logs = (tmp_path / "a.log", tmp_path / "b.log")
    with serving(env, logs[0]), serving(env, logs[1]):
        deadline = time.monotonic() + 120
        while min(len(_checks(*logs).get(service, [])) for service in ids) < CHECKS_PER_SERVICE:
            assert time.monotonic() < deadline, _checks(*logs)
            time.sleep(0.2)
    checks = _checks(*logs)
    assert set(checks) == set(ids)
    for service in ids:
        dues = sorted(due for due, _status in checks[service])
        assert len(dues) == len(set(dues)), f"{service} checked twice for one interval: {dues}"
        gaps = {(later - earlier).total_seconds() for earlier, later in zip(dues, dues[1:], strict=False)}
        assert gaps == {INTERVAL_S}, f"{service}: {dues}"
        assert {status for _due, status in checks[service]} == {"passing"}
    assert ALICE_PASSWORD not in logs[0].read_text() + logs[1].read_text()
