"""API tokens: named, with an expiry (90 days unless told; null: never), listed without the token,
revoked at once on every process sharing the database."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import update

from guara.context import AppContext
from guara.core import accounts
from guara.store.models import ApiToken
from tests.conftest import build_context
from tests.support import ApiUser, run, serving


def _parsed(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_create_list_and_revoke(client: ApiUser) -> None:
    created = client.post("/tokens", json={"name": "ci deploys"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "name", "token", "expires_at"}
    assert body["name"] == "ci deploys" and body["token"].startswith("gua_")
    left = _parsed(body["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=89) < left <= timedelta(days=90)
    forever = client.post("/tokens", json={"name": "forever", "expires_in_days": None}).json()
    assert forever["expires_at"] is None

    issued = ApiUser(client.http, client.email, body["token"])
    assert issued.get("/projects").status_code == 200
    listed = client.get("/tokens")
    assert listed.status_code == 200
    assert body["token"] not in listed.text and forever["token"] not in listed.text
    rows = {row["name"]: row for row in listed.json()}
    assert set(rows) == {"cli", "ci deploys", "forever"}
    assert set(rows["ci deploys"]) == {"id", "name", "created_at", "last_used_at", "expires_at"}
    assert rows["ci deploys"]["last_used_at"] is not None
    assert rows["forever"]["last_used_at"] is None

    assert client.delete(f"/tokens/{body['id']}").status_code == 204
    refused = issued.get("/projects")
    assert (refused.status_code, refused.json()["code"]) == (401, "token_revoked")
    assert {row["name"] for row in client.get("/tokens").json()} == {"cli", "forever"}
    assert client.delete(f"/tokens/{body['id']}").status_code == 404


def test_expiry_is_checked_and_bounded(client: ApiUser, context: AppContext) -> None:
    short = client.post("/tokens", json={"name": "short", "expires_in_days": 1}).json()
    with context.db.session() as session:
        past = datetime.now(UTC) - timedelta(seconds=1)
        session.execute(update(ApiToken).where(ApiToken.name == "short").values(expires_at=past))
    refused = ApiUser(client.http, client.email, short["token"]).get("/projects")
    assert (refused.status_code, refused.json()["code"]) == (401, "token_expired")
    for days in (0, -1, 3651, "ninety"):
        answer = client.post("/tokens", json={"name": "bad", "expires_in_days": days})
        assert answer.status_code == 422, (days, answer.text)
    for name in ("", "   ", "a\nb", "x" * 101):
        assert client.post("/tokens", json={"name": name}).status_code == 422, name


def test_nobody_else_sees_or_revokes_a_token(client: ApiUser, context: AppContext) -> None:
    other = ApiUser.sign_up(client.http, context, "other@example.com")
    mine = client.post("/tokens", json={"name": "mine"}).json()
    assert "mine" not in {row["name"] for row in other.get("/tokens").json()}
    assert other.delete(f"/tokens/{mine['id']}").status_code == 404
    assert ApiUser(client.http, client.email, mine["token"]).get("/tokens").status_code == 200


def test_a_revoked_token_fails_on_another_process_at_once(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GUARA_")}, **settings_env}
    arrange = build_context(settings_env)
    run(accounts.create_user, arrange, email="ops@example.com", password="long enough pw")
    admin = run(accounts.create_api_token, arrange, email="ops@example.com")
    arrange.close()
    with serving(env, tmp_path / "a.log") as first, serving(env, tmp_path / "b.log") as second:
        a = httpx.Client(base_url=first.url + "/api/v1", headers={"Authorization": f"Bearer {admin}"})
        created = a.post("/tokens", json={"name": "leaked"}).json()
        b = httpx.Client(
            base_url=second.url + "/api/v1", headers={"Authorization": f"Bearer {created['token']}"}
        )
        assert b.get("/projects").status_code == 200
        assert a.delete(f"/tokens/{created['id']}").status_code == 204
        refused = b.get("/projects")
        assert (refused.status_code, refused.json()["code"]) == (401, "token_revoked")
