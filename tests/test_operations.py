"""What an operator runs: JSON logs with request and user ids, /metrics on its own address, and several
worker processes whose counters add up. Each test runs a real ``guara serve``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from guara.core import accounts
from tests.conftest import build_context
from tests.support import free_port, run, serving


def _env(settings_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("GUARA_")}, **settings_env, **extra}


def _token(env: dict[str, str]) -> tuple[str, str]:
    """A user and an API token made before the server starts: (user id, token)."""
    context = build_context(env)
    try:
        principal = run(accounts.create_user, context, email="ops@example.com", password="correct horse 1")
        return str(principal.user_id), run(accounts.create_api_token, context, email="ops@example.com")
    finally:
        context.db.dispose()


def _requests_total(text: str, route: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "guara_http_requests_total" and sample.labels["route"] == route
    )


def test_json_logs_carry_request_and_user_ids(settings_env: dict[str, str], tmp_path: Path) -> None:
    env = _env(settings_env, GUARA_LOG_FORMAT="json")
    user_id, token = _token(env)
    log = tmp_path / "server.log"
    with serving(env, log) as served:
        answered = httpx.get(
            served.url + "/api/v1/projects",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-7f3a"},
        )
        assert answered.status_code == 200
        assert answered.headers["x-request-id"] == "trace-7f3a"
        anonymous = httpx.get(served.url + "/api/v1/projects")
        assert anonymous.status_code == 401
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lines, "no log lines"
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    [access] = [line for line in lines if line.get("request_id") == "trace-7f3a"]
    assert access["logger"] == "uvicorn.access" and access["user_id"] == user_id
    assert "/api/v1/projects" in access["message"]
    [refused] = [line for line in lines if line.get("request_id") == anonymous.headers["x-request-id"]]
    assert "user_id" not in refused


def test_metrics_on_their_own_address(settings_env: dict[str, str], tmp_path: Path) -> None:
    metrics_port = free_port()
    env = _env(settings_env, GUARA_METRICS_ADDR=f"127.0.0.1:{metrics_port}")
    with serving(env, tmp_path / "server.log") as served:
        assert httpx.get(served.url + "/healthz").status_code == 200
        assert httpx.get(served.url + "/metrics").status_code == 404
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert _requests_total(text, "/healthz") == 1
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/api/v1/projects").status_code == 404


def test_worker_processes_add_up_their_counters(settings_env: dict[str, str], tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = _env(settings_env, PROMETHEUS_MULTIPROC_DIR=str(shared))
    with serving(env, tmp_path / "server.log", "--workers", "2") as served:
        pid = served.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        commands = [Path(f"/proc/{child}/cmdline").read_bytes() for child in children]
        assert len([command for command in commands if b"spawn_main" in command]) == 2
        for _ in range(20):  # a new connection each: the kernel hands them to either worker
            assert httpx.get(served.url + "/healthz").status_code == 200
        # Whichever worker answers adds up every worker's counts.
        assert _requests_total(httpx.get(served.url + "/metrics").text, "/healthz") == 20
