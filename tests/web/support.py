"""Helpers for dashboard tests: a signed-in TestClient that posts forms like a browser without JS."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select

from guara.context import AppContext
from guara.core import accounts, projects
from guara.core.accounts import Principal
from guara.store.models import User
from tests.support import run

PASSWORD = "correct horse 1"  # noqa: S105  (a test account's password)


def create_user(context: AppContext, email: str) -> Principal:
    return run(accounts.create_user, context, email=email, password=PASSWORD)


def principal_of(context: AppContext, email: str) -> Principal:
    """The account of ``email``, as the use cases see it."""
    with context.db.session() as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        return Principal(user.id, user.email)


def create_project(context: AppContext, email: str, name: str = "shop") -> str:
    return str(run(projects.create_project, context, principal_of(context, email), name=name).id)


def form_csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "page has no form with a csrf_token"
    return match.group(1)


def meta_csrf(page: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert match, "page has no csrf meta tag"
    return match.group(1)


def text_of(page: str) -> str:
    """The page's visible text, roughly: tags dropped, entities decoded, spaces collapsed."""
    without_tags = re.sub(r"<[^>]+>", " ", page)
    return re.sub(r"\s+", " ", html.unescape(without_tags))


@dataclass
class WebUser:
    http: TestClient
    email: str
    csrf: str

    @classmethod
    def sign_in(cls, http: TestClient, context: AppContext, email: str) -> WebUser:
        create_user(context, email)
        login = http.get("/login")
        response = http.post(
            "/login",
            data={"email": email, "password": PASSWORD, "csrf_token": form_csrf(login.text)},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        return cls(http, email, meta_csrf(http.get("/projects").text))

    def post_form(self, path: str, data: dict[str, str], **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.http.post(
            path, data={"csrf_token": self.csrf, **data}, follow_redirects=False, **kwargs
        )
        return response

    def post_json(self, path: str, body: dict[str, Any]) -> httpx.Response:
        response: httpx.Response = self.http.post(path, json=body, headers={"X-CSRF-Token": self.csrf})
        return response
