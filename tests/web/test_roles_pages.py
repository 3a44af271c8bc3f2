"""Every dashboard route (pages, forms and the JSON helpers under /-/), walked as owner, developer,
viewer and non-member; what each may do is read from the one role table (guara.core.roles)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from guara.context import AppContext
from guara.core.roles import Action, Role, allows
from guara.web import audit_pages, endpoints, routes, service_pages, team_pages, webhook_pages
from tests.support import ApiUser, make_client, run
from tests.web.support import WebUser, principal_of

IMAGE = "127.0.0.1:1/acme/api:v1"  # nothing listens on loopback port 1


@dataclass(frozen=True)
class Page:
    method: str
    path: str
    action: Action
    form: Callable[[dict[str, str]], dict[str, str]] | None = None
    json: Callable[[dict[str, str]], dict[str, Any]] | None = None


# Deleting and leaving come last: they end what the walk can still reach.
PAGES = [
    Page("GET", "/projects/{project_id}", Action.PROJECT_READ),
    Page("GET", "/projects/{project_id}/members", Action.MEMBERS_READ),
    Page(
        "POST",
        "/projects/{project_id}/members",
        Action.MEMBERS_MANAGE,
        lambda v: {"email": "new@example.com", "role": "viewer"},
    ),
    Page(
        "POST",
        "/projects/{project_id}/members/{user_id}/role",
        Action.MEMBERS_MANAGE,
        lambda v: {"role": "viewer"},
    ),
    Page("GET", "/projects/{project_id}/audit-logs", Action.AUDIT_READ),
    Page("GET", "/projects/{project_id}/services/new", Action.SERVICE_CREATE),
    Page(
        "POST",
        "/projects/{project_id}/services/new",
        Action.SERVICE_CREATE,
        lambda v: {"name": "web", "image": IMAGE},
    ),
    Page("GET", "/services/{service_id}", Action.SERVICE_READ),
    Page("GET", "/services/{service_id}/settings", Action.SERVICE_READ),
    Page(
        "POST",
        "/services/{service_id}/settings/deploy",
        Action.SERVICE_UPDATE,
        lambda v: {"image": IMAGE, "port": "8081"},
    ),
    Page(
        "POST",
        "/services/{service_id}/settings/registry-credentials",
        Action.CREDENTIALS_WRITE,
        lambda v: {"registry": "127.0.0.1:1", "username": "u", "password": "p", "skip_verification": "true"},
    ),
    Page("GET", "/services/{service_id}/settings/registry-credentials/remove", Action.CREDENTIALS_WRITE),
    Page(
        "POST",
        "/-/test-connection",
        Action.CREDENTIALS_USE,
        json=lambda v: {"image": IMAGE, "registry": "127.0.0.1:1", "service_id": v["service_id"]},
    ),
    Page("POST", "/-/platforms", Action.CREDENTIALS_USE, json=lambda v: {"service_id": v["service_id"]}),
    Page(
        "POST",
        "/services/{service_id}/settings/registry-credentials/check",
        Action.CREDENTIALS_USE,
        lambda v: {},
    ),
    Page("GET", "/projects/{project_id}/webhook", Action.WEBHOOK_READ),
    Page(
        "POST",
        "/projects/{project_id}/webhook",
        Action.WEBHOOK_MANAGE,
        lambda v: {"url": "https://hooks.example.com/guara", "secret": "a signing secret of the walk"},
    ),
    Page("POST", "/projects/{project_id}/webhook/remove", Action.WEBHOOK_MANAGE, lambda v: {}),
    Page(
        "POST",
        "/services/{service_id}/settings/registry-credentials/remove",
        Action.CREDENTIALS_WRITE,
        lambda v: {},
    ),
    Page("POST", "/services/{service_id}/deployments", Action.DEPLOY, lambda v: {}),
    Page("POST", "/services/{service_id}/stop", Action.SERVICE_STOP, lambda v: {}),
    Page("GET", "/services/{service_id}/logs", Action.LOGS_READ),
    Page("GET", "/services/{service_id}/delete", Action.SERVICE_DELETE),
    Page("GET", "/projects/{project_id}/delete", Action.PROJECT_DELETE),
    Page("POST", "/projects/{project_id}/delete", Action.PROJECT_DELETE, lambda v: {"confirm": "demo"}),
    Page("POST", "/services/{service_id}/delete", Action.SERVICE_DELETE, lambda v: {"confirm": "api"}),
    Page("POST", "/projects/{project_id}/members/{user_id}/remove", Action.MEMBERS_MANAGE, lambda v: {}),
    Page("POST", "/projects/{project_id}/members/{own_id}/remove", Action.PROJECT_LEAVE, lambda v: {}),
]
# Outside any project: public pages, the caller's own account, and the image check.
UNSCOPED = {
    ("GET", "/"),
    ("GET", "/setup"),
    ("POST", "/setup"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/projects"),
    ("POST", "/projects"),
    ("GET", "/account"),
    ("POST", "/account/tokens"),
    ("POST", "/account/tokens/{token_id}/revoke"),
    ("POST", "/account/password"),
    ("POST", "/account/sign-out-everywhere"),
    ("POST", "/accounts"),
    ("POST", "/account/invitations"),
    ("GET", "/invite/{token}"),
    ("POST", "/invite/{token}"),
    ("POST", "/-/image-check"),
}


def test_the_walk_covers_every_dashboard_route() -> None:
    found = {
        (method, route.path)
        for module in (routes, service_pages, audit_pages, team_pages, webhook_pages, endpoints)
        for route in module.router.routes
        for method in getattr(route, "methods", set())
    }
    walked = {(page.method, page.path.replace("{own_id}", "{user_id}")) for page in PAGES}
    assert found - UNSCOPED == walked


@pytest.mark.parametrize("role", [Role.OWNER, Role.DEVELOPER, Role.VIEWER, None], ids=str)
def test_every_page_answers_as_the_role_table_says(context: AppContext, role: Role | None) -> None:
    with contextlib.ExitStack() as stack:
        users = {}
        for name in ("owner", "developer", "viewer", "stranger", "target"):
            http = stack.enter_context(make_client(context))
            users[name] = WebUser.sign_in(http, context, f"{name}@example.com")
        WebUser.sign_in(stack.enter_context(make_client(context)), context, "new@example.com")
        api_http = stack.enter_context(make_client(context))
        owner_api = ApiUser(api_http, "owner@example.com", _token(context, "owner@example.com"))
        project_id = owner_api.project()
        service_id = owner_api.service(project_id, image=IMAGE)
        for name in ("developer", "viewer", "target"):
            added = owner_api.post(
                f"/projects/{project_id}/members",
                json={"email": f"{name}@example.com", "role": "viewer" if name == "target" else name},
            )
            assert added.status_code == 201, added.text
        ids = {
            email: str(principal_of(context, email).user_id) for email in (f"{n}@example.com" for n in users)
        }
        name = role.value if role else "stranger"
        caller = users[name]
        values = {
            "project_id": project_id,
            "service_id": service_id,
            "user_id": ids["target@example.com"],
            "own_id": ids[f"{name}@example.com"],
        }
        for page in PAGES:
            path = page.path.format(**values)
            answer: httpx.Response
            if page.json is not None:
                answer = caller.post_json(path, page.json(values))
            elif page.form is not None:
                answer = caller.post_form(path, page.form(values))
            else:
                answer = caller.http.get(path, follow_redirects=False)
            where = f"{page.method} {page.path} as {role}: {answer.status_code}"
            if role is None:
                assert answer.status_code == 404, where
            elif allows(role, page.action):
                assert answer.status_code not in (401, 403, 404, 500), where
                assert answer.headers.get("location") != "/login", where
            else:
                assert answer.status_code == 403, where


def _token(context: AppContext, email: str) -> str:
    from guara.core import accounts

    return run(accounts.create_api_token, context, email=email)
