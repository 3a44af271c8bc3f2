"""The account page without JavaScript: changing the password keeps this session and ends the others,
signing out everywhere ends all; the admin makes accounts and invitation links there, others cannot."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from guara.context import AppContext
from tests.support import make_client
from tests.web.support import PASSWORD, WebUser, form_csrf, meta_csrf, text_of


def test_password_change_keeps_this_session_and_ends_the_others(context: AppContext) -> None:
    with make_client(context) as here_http, make_client(context) as there_http:
        here = WebUser.sign_in(here_http, context, "admin@example.com")
        there = _sign_in_again(there_http, "admin@example.com")
        wrong = here.post_form("/account/password", {"current_password": "nope", "new_password": "x" * 12})
        assert wrong.status_code == 422 and "current password is not right" in text_of(wrong.text)
        changed = here.post_form(
            "/account/password", {"current_password": PASSWORD, "new_password": "another password"}
        )
        assert (changed.status_code, changed.headers["location"]) == (303, "/account?notice=password")
        assert "other sessions ended" in text_of(here.http.get(changed.headers["location"]).text)
        assert there.http.get("/account", follow_redirects=False).headers["location"] == "/login"
        out = here.post_form("/account/sign-out-everywhere", {})
        assert out.headers["location"] == "/login"
        assert here.http.get("/account", follow_redirects=False).headers["location"] == "/login"


def test_the_admin_creates_accounts_and_invitations_on_the_account_page(context: AppContext) -> None:
    with make_client(context) as admin_http, make_client(context) as other_http:
        admin = WebUser.sign_in(admin_http, context, "admin@example.com")
        assert "Accounts (admin)" in admin.http.get("/account").text
        made = admin.post_form("/accounts", {"email": "ana@example.com", "password": "a fine password"})
        assert made.status_code == 200 and "Account ana@example.com created" in text_of(made.text)
        invited = admin.post_form("/account/invitations", {"email": "bo@example.com"})
        link = re.search(r"<code data-invitation>([^<]+)</code>", invited.text)
        assert link and "/invite/" in link.group(1)
        ana = _sign_in_again(other_http, "ana@example.com", "a fine password")
        assert "Accounts (admin)" not in ana.http.get("/account").text
        refused = ana.post_form("/accounts", {"email": "eve@example.com", "password": "a fine password"})
        assert refused.status_code == 403


def _sign_in_again(http: TestClient, email: str, password: str = PASSWORD) -> WebUser:
    """Another session of an existing account."""
    login = http.get("/login")
    answer = http.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": form_csrf(login.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    page = http.get("/projects").text
    return WebUser(http, email, meta_csrf(page))
