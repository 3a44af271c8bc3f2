"""Every dashboard route (pages, forms and the JSON helpers under /-/), walked as owner, developer,
viewer and non-member; what each may do is read from the one role table (guara.core.roles)."""

from __future__ import annotations

import contextlib
import html
import re
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


@dataclass
class Walk:
    """A project with one service (with stored credentials), an owner, a developer and a viewer, a
    stranger, and a member to act on (``target``), each signed in to the dashboard."""

    users: dict[str, WebUser]
    values: dict[str, str]

    def caller(self, role: Role | None) -> tuple[WebUser, dict[str, str]]:
        name = role.value if role else "stranger"
        return self.users[name], {**self.values, "own_id": self.values[f"id:{name}"]}


def _walk(stack: contextlib.ExitStack, context: AppContext) -> Walk:
    users = {}
    for name in ("owner", "developer", "viewer", "stranger", "target"):
        http = stack.enter_context(make_client(context))
        users[name] = WebUser.sign_in(http, context, f"{name}@example.com")
    WebUser.sign_in(stack.enter_context(make_client(context)), context, "new@example.com")
    api_http = stack.enter_context(make_client(context))
    owner_api = ApiUser(api_http, "owner@example.com", _token(context, "owner@example.com"))
    project_id = owner_api.project()
    service_id = owner_api.service(project_id, image=IMAGE)
    saved = owner_api.put(
        f"/services/{service_id}/registry-credentials",
        json={"registry": "127.0.0.1:1", "username": "u", "password": "p", "skip_verification": True},
    )
    assert saved.status_code == 200, saved.text
    for name in ("developer", "viewer", "target"):
        added = owner_api.post(
            f"/projects/{project_id}/members",
            json={"email": f"{name}@example.com", "role": "viewer" if name == "target" else name},
        )
        assert added.status_code == 201, added.text
    values = {"project_id": project_id, "service_id": service_id}
    for name in users:
        values[f"id:{name}"] = str(principal_of(context, f"{name}@example.com").user_id)
    values["user_id"] = values["id:target"]
    return Walk(users, values)


@pytest.mark.parametrize("role", [Role.OWNER, Role.DEVELOPER, Role.VIEWER, None], ids=str)
def test_every_page_answers_as_the_role_table_says(context: AppContext, role: Role | None) -> None:
    with contextlib.ExitStack() as stack:
        caller, values = _walk(stack, context).caller(role)
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


# A link that opens the credentials editor leads to a write, though the page it loads is readable.
EDIT_LINK = re.compile(r"[?&]edit=1(?:&|#|$)")


def _action_of(method: str, url: str, values: dict[str, str]) -> Action | None:
    """The role-table action a link (GET) or form (POST) on a page leads to; None outside a project."""
    if EDIT_LINK.search(url):
        return Action.CREDENTIALS_WRITE
    path = re.split(r"[?#]", url, maxsplit=1)[0]
    return next(
        (page.action for page in PAGES if page.method == method and path == page.path.format(**values)),
        None,
    )


@pytest.mark.parametrize("role", [Role.OWNER, Role.DEVELOPER, Role.VIEWER], ids=str)
def test_pages_offer_only_what_the_role_may_do(context: AppContext, role: Role) -> None:
    """Every link and form on the pages a member can read leads somewhere their role allows: a viewer
    is not shown a Deploy button or a credentials form that would only answer 403."""
    with contextlib.ExitStack() as stack:
        caller, values = _walk(stack, context).caller(role)
        offered: set[tuple[str, Action]] = set()
        for page in PAGES:
            if page.method != "GET" or not allows(role, page.action):
                continue
            answer = caller.http.get(page.path.format(**values))
            assert answer.status_code == 200, (page.path, answer.status_code)
            body = answer.text
            links = [("GET", html.unescape(href)) for href in re.findall(r'<a [^>]*href="([^"]+)"', body)]
            forms = [
                ("POST", html.unescape(action))
                for action in re.findall(r'<form [^>]*method="post"[^>]*action="([^"]+)"', body)
            ]
            for method, url in links + forms:
                action = _action_of(method, url, values)
                if action is not None:
                    assert allows(role, action), f"{page.path} offers {method} {url} ({action}) to a {role}"
                    offered.add((page.path, action))
        # The walk saw the controls at all: what a developer may do is offered to one.
        if role is not Role.VIEWER:
            actions = {action for _, action in offered}
            assert {
                Action.DEPLOY,
                Action.CREDENTIALS_WRITE,
                Action.CREDENTIALS_USE,
                Action.SERVICE_CREATE,
            } <= actions


def _token(context: AppContext, email: str) -> str:
    from guara.core import accounts

    return run(accounts.create_api_token, context, email=email)
