"""Accounts: the first one is the admin, who creates further accounts and invitation links (with an
expiry, usable once); changing a password ends the other sessions; signing out everywhere ends all."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from guara.context import AppContext
from guara.core import accounts
from guara.store.models import Invitation
from tests.support import ApiUser, run
from tests.web.support import form_csrf

PASSWORD = "correct horse 1"  # noqa: S105  (the test accounts' password)


def _signed_in(context: AppContext, email: str, password: str = PASSWORD) -> str:
    new = run(accounts.sign_in, context, email=email, password=password, client="test")
    return new.cookie_value


def _session_works(context: AppContext, cookie: str) -> bool:
    try:
        run(accounts.signed_in, context, cookie_value=cookie)
    except Exception:  # noqa: BLE001  (NotAuthenticated: the session ended)
        return False
    return True


def test_the_admin_creates_accounts_and_nobody_else_does(client: ApiUser, context: AppContext) -> None:
    assert client.get("/account").json()["is_admin"] is True
    made = client.post("/accounts", json={"email": "Ana@Example.com", "password": PASSWORD})
    assert made.status_code == 201, made.text
    assert made.json()["email"] == "ana@example.com" and made.json()["is_admin"] is False
    assert PASSWORD not in made.text
    ana = ApiUser(
        client.http, "ana@example.com", run(accounts.create_api_token, context, email="ana@example.com")
    )
    assert ana.get("/account").json()["is_admin"] is False
    refused = ana.post("/accounts", json={"email": "eve@example.com", "password": PASSWORD})
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert ana.post("/invitations", json={}).status_code == 403
    again = client.post("/accounts", json={"email": "ana@example.com", "password": PASSWORD})
    assert again.status_code == 409


def test_an_invitation_link_makes_one_account_until_it_expires(client: ApiUser, context: AppContext) -> None:
    made = client.post("/invitations", json={"email": "bo@example.com"})
    assert made.status_code == 201, made.text
    body = made.json()
    left = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")) - datetime.now(UTC)
    assert timedelta(hours=71) < left <= timedelta(hours=72)
    path = "/" + body["url"].split("/", 3)[3]
    assert path.startswith("/invite/")
    web = client.http
    page = web.get(path)
    assert page.status_code == 200 and 'value="bo@example.com"' in page.text
    wrong = web.post(
        path,
        data={"email": "eve@example.com", "password": PASSWORD, "csrf_token": form_csrf(page.text)},
        follow_redirects=False,
    )
    assert wrong.status_code == 422, (wrong.status_code, wrong.headers, wrong.text[:3000])
    assert "this invitation is for bo@example.com" in wrong.text
    accepted = web.post(
        path,
        data={"email": "bo@example.com", "password": PASSWORD, "csrf_token": form_csrf(page.text)},
        follow_redirects=False,
    )
    assert accepted.status_code == 303 and accepted.headers["location"] == "/projects"
    assert web.get("/projects").status_code == 200
    web.cookies.clear()
    assert web.get(path).status_code == 404
    assert _signed_in(context, "bo@example.com")

    later = client.post("/invitations", json={"expires_in_hours": 1}).json()
    with context.db.session() as session:
        session.execute(
            update(Invitation)
            .where(Invitation.id == uuid.UUID(later["id"]))
            .values(expires_at=datetime.now(UTC))
        )
    expired = web.get("/" + later["url"].split("/", 3)[3])
    assert expired.status_code == 409 and "expired" in expired.text
    assert client.post("/invitations", json={"expires_in_hours": 0}).status_code == 422


def test_changing_the_password_ends_the_other_sessions(client: ApiUser, context: AppContext) -> None:
    here, elsewhere = _signed_in(context, client.email), _signed_in(context, client.email)
    client.http.cookies.set("guara_session", here)
    wrong = client.http.put(
        "/api/v1/account/password",
        json={"current_password": "not it at all", "new_password": "a new password"},
        headers={"X-CSRF-Token": run(accounts.signed_in, context, cookie_value=here).csrf_token},
    )
    assert (wrong.status_code, wrong.json()["code"]) == (422, "wrong_password")
    changed = client.http.put(
        "/api/v1/account/password",
        json={"current_password": PASSWORD, "new_password": "a new password"},
        headers={"X-CSRF-Token": run(accounts.signed_in, context, cookie_value=here).csrf_token},
    )
    assert changed.status_code == 204, changed.text
    assert _session_works(context, here) and not _session_works(context, elsewhere)
    assert _signed_in(context, client.email, "a new password")
    assert client.get("/projects").status_code == 200  # API tokens are revoked one by one


def test_signing_out_everywhere_ends_every_session(client: ApiUser, context: AppContext) -> None:
    first, second = _signed_in(context, client.email), _signed_in(context, client.email)
    assert client.post("/account/sign-out-everywhere").status_code == 204
    assert not _session_works(context, first) and not _session_works(context, second)
