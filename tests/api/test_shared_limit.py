"""Two guara processes sharing one Redis limit: the sixth Test Connection in a minute is refused."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.support import cli_user_with_token, serve

pytestmark = pytest.mark.redis


def test_two_processes_share_the_redis_limit(
    settings_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GUARA_")},
        **settings_env,
        "GUARA_REDIS_URL": redis_url,
    }
    token = cli_user_with_token(env, f"ops-{tmp_path.name}@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    # A closed loopback port fails fast (invalid_url): the limit counts attempts, not successes.
    body = {"image": "127.0.0.1:1/acme/api:v1"}
    with serve(env, tmp_path / "a.log") as a, serve(env, tmp_path / "b.log") as b:
        codes = [
            httpx.post(f"{url}/api/v1/registry/test", json=body, headers=headers, timeout=20).status_code
            for url in (a, b, a, b, a)
        ]
        assert codes == [200] * 5
        refused = httpx.post(f"{b}/api/v1/registry/test", json=body, headers=headers, timeout=20)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert "Retry-After" in refused.headers
