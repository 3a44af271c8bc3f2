"""Every API route, walked as owner, developer, viewer and non-member; what each may do is read from
the one role table (guara.core.roles), so the table and the code cannot drift apart."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from guara.context import AppContext
from guara.core.roles import MINIMUM_ROLE, Action, Role, allows
from tests.support import ApiUser

# Loopback port 1 (nothing listens): a deploy or a Test Connection fails fast and never leaves the machine.
IMAGE = "127.0.0.1:1/acme/api:v1"


@dataclass
class World:
    owner: ApiUser
    developer: ApiUser
    viewer: ApiUser
    stranger: ApiUser
    project_id: str
    service_id: str
    # A member the walk changes and removes.
    target_id: str
    ids: dict[Role | None, str]


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # the route's path under /api/v1, with {placeholders}
    action: Action
    body: Callable[[World], Any] | None = None
    query: str = ""
    # Only meaningful once the service is gone (an owner deleted it just before).
    after_delete: bool = False


# Deleting and leaving come last: they end what the walk can still reach.
CALLS = [
    Call("GET", "/projects/{project_id}", Action.PROJECT_READ),
    Call("GET", "/projects/{project_id}/members", Action.MEMBERS_READ),
    Call(
        "POST",
        "/projects/{project_id}/members",
        Action.MEMBERS_MANAGE,
        lambda w: {"email": "newcomer@example.com", "role": "viewer"},
    ),
    Call(
        "PATCH",
        "/projects/{project_id}/members/{user_id}",
        Action.MEMBERS_MANAGE,
        lambda w: {"role": "viewer"},
    ),
    Call("GET", "/projects/{project_id}/audit-logs", Action.AUDIT_READ),
    Call("GET", "/projects/{project_id}/services", Action.SERVICE_READ),
    Call(
        "POST",
        "/projects/{project_id}/services",
        Action.SERVICE_CREATE,
        lambda w: {"name": "web", "image": IMAGE},
    ),
    Call("GET", "/services/{service_id}", Action.SERVICE_READ),
    Call("PATCH", "/services/{service_id}", Action.SERVICE_UPDATE, lambda w: {"port": 8081}),
    Call(
        "PUT",
        "/services/{service_id}/registry-credentials",
        Action.CREDENTIALS_WRITE,
        lambda w: {"registry": "127.0.0.1:1", "username": "u", "password": "p", "skip_verification": True},
    ),
    Call(
        "POST",
        "/registry/test",
        Action.CREDENTIALS_USE,
        lambda w: {"image": IMAGE, "registry": "127.0.0.1:1", "service_id": w.service_id},
    ),
    Call("POST", "/services/{service_id}/registry-credentials/check", Action.CREDENTIALS_USE),
    Call(
        "PUT",
        "/projects/{project_id}/webhook",
        Action.WEBHOOK_MANAGE,
        lambda w: {"url": "https://hooks.example.com/guara", "secret": "a signing secret of the walk"},
    ),
    Call("GET", "/projects/{project_id}/webhook", Action.WEBHOOK_READ),
    Call("DELETE", "/projects/{project_id}/webhook", Action.WEBHOOK_MANAGE),
    Call("DELETE", "/services/{service_id}/registry-credentials", Action.CREDENTIALS_WRITE),
    Call("POST", "/services/{service_id}/deployments", Action.DEPLOY),
    Call("GET", "/services/{service_id}/deployments", Action.DEPLOYMENTS_READ),
    Call("GET", "/services/{service_id}/deployments/{deployment_id}", Action.DEPLOYMENTS_READ),
    Call("POST", "/services/{service_id}/stop", Action.SERVICE_STOP),
    Call("GET", "/services/{service_id}/logs", Action.LOGS_READ),
    Call("DELETE", "/services/{service_id}", Action.SERVICE_DELETE),
    # Deleted, the service's deployments are still there for owners.
    Call("GET", "/services/{service_id}/deployments", Action.DELETED_HISTORY_READ, after_delete=True),
    Call("DELETE", "/projects/{project_id}", Action.PROJECT_DELETE, query="?cascade=false"),
    Call("DELETE", "/projects/{project_id}/members/{user_id}", Action.MEMBERS_MANAGE),
    Call("DELETE", "/projects/{project_id}/members/{own_id}", Action.PROJECT_LEAVE),
]
# Routes outside any project: every signed-in account may use them.
UNSCOPED = {
    ("GET", "/projects"),
    ("POST", "/projects"),
    ("POST", "/registry/test"),
    ("POST", "/tokens"),
    ("GET", "/tokens"),
    ("DELETE", "/tokens/{token_id}"),
    ("GET", "/account"),
    ("POST", "/accounts"),
    ("POST", "/invitations"),
    ("PUT", "/account/password"),
    ("POST", "/account/sign-out-everywhere"),
}
# A route the walk does not reach as an action of its own.
UNLISTED: set[tuple[str, str]] = set()


def _routes(context: AppContext) -> set[tuple[str, str]]:
    """Every API route, from the OpenAPI document (it lists each method of each path)."""
    from guara.app import create_app

    paths = create_app(context).openapi()["paths"]
    return {
        (method.upper(), path.removeprefix("/api/v1"))
        for path, operations in paths.items()
        for method in operations
    }


def test_the_walk_covers_every_api_route_and_every_action(context: AppContext) -> None:
    walked = {(call.method, call.path.replace("{own_id}", "{user_id}")) for call in CALLS}
    assert Action.DELETED_HISTORY_READ in {call.action for call in CALLS}
    assert _routes(context) - UNSCOPED - UNLISTED == walked - UNSCOPED
    assert set(MINIMUM_ROLE) == set(Action)


def _world(client: ApiUser, context: AppContext) -> World:
    developer = ApiUser.sign_up(client.http, context, "dev@example.com")
    viewer = ApiUser.sign_up(client.http, context, "viewer@example.com")
    stranger = ApiUser.sign_up(client.http, context, "stranger@example.com")
    target = ApiUser.sign_up(client.http, context, "target@example.com")
    ApiUser.sign_up(client.http, context, "newcomer@example.com")
    project_id = client.project()
    service_id = client.service(project_id, image=IMAGE)
    ids: dict[Role | None, str] = {}
    for user, role in ((developer, "developer"), (viewer, "viewer"), (target, "viewer")):
        added = client.post(f"/projects/{project_id}/members", json={"email": user.email, "role": role})
        assert added.status_code == 201, added.text
        assert added.json()["role"] == role
        if user is not target:
            ids[Role(role)] = added.json()["user_id"]
    members = {m["email"]: m for m in client.get(f"/projects/{project_id}/members").json()}
    assert members["owner@example.com"]["role"] == "owner"
    ids[Role.OWNER] = members["owner@example.com"]["user_id"]
    ids[None] = "00000000-0000-0000-0000-000000000001"
    target_id = members["target@example.com"]["user_id"]
    # A webhook exists already, so reading it answers whoever may read it.
    hook = {"url": "https://hooks.example.com/setup", "secret": "a signing secret of the setup"}
    assert client.put(f"/projects/{project_id}/webhook", json=hook).status_code == 200
    return World(client, developer, viewer, stranger, project_id, service_id, target_id, ids)


@pytest.mark.parametrize("role", [Role.OWNER, Role.DEVELOPER, Role.VIEWER, None], ids=str)
def test_every_route_answers_as_the_role_table_says(
    client: ApiUser, context: AppContext, role: Role | None
) -> None:
    world = _world(client, context)
    callers: dict[Role | None, ApiUser] = {
        Role.OWNER: world.owner,
        Role.DEVELOPER: world.developer,
        Role.VIEWER: world.viewer,
        None: world.stranger,
    }
    caller = callers[role]
    # A deployment exists for the routes that read one.
    deployed = world.owner.post(f"/services/{world.service_id}/deployments")
    assert deployed.status_code == 202, deployed.text
    values = {
        "project_id": world.project_id,
        "service_id": world.service_id,
        "deployment_id": deployed.json()["id"],
        "user_id": world.target_id,
        "own_id": world.ids[role],
    }
    for call in CALLS:
        if call.after_delete and role != Role.OWNER:
            # The walk of other roles leaves the service alive: delete it as its owner first.
            _wait_idle(world)
            assert world.owner.delete(f"/services/{world.service_id}").status_code == 204
        if call.method == "DELETE" and call.path == "/services/{service_id}":
            _wait_idle(world)
        path = call.path.format(**values)
        kwargs = {"json": call.body(world)} if call.body else {}
        answer = caller.request(call.method, path + call.query, **kwargs)
        where = f"{call.method} {call.path} as {role}: {answer.status_code} {answer.text}"
        if role is None:
            assert answer.status_code == 404, where
            assert answer.json()["code"] in ("not_found", "member_not_found"), where
        elif allows(role, call.action):
            assert answer.status_code not in (401, 403, 404, 500), where
        else:
            assert answer.status_code == 403, where
            assert answer.json()["code"] == "forbidden", where


def _wait_idle(world: World) -> None:
    """Until the service's deployments have ended (a deletion waits for a running one)."""
    deadline = time.monotonic() + 30
    while any(
        d["status"] in ("pending", "resolving", "starting")
        for d in world.owner.get(f"/services/{world.service_id}/deployments").json()
    ):
        assert time.monotonic() < deadline, "a deployment did not end"
        time.sleep(0.05)


def test_the_last_owner_can_neither_leave_nor_be_demoted(client: ApiUser, context: AppContext) -> None:
    world = _world(client, context)
    members = f"/projects/{world.project_id}/members"
    own = world.ids[Role.OWNER]
    for answer in (
        client.delete(f"{members}/{own}"),
        client.request("PATCH", f"{members}/{own}", json={"role": "viewer"}),
    ):
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "last_owner"
    # With a second owner, the first may step down, and then leave.
    promoted = client.request("PATCH", f"{members}/{world.ids[Role.DEVELOPER]}", json={"role": "owner"})
    assert promoted.status_code == 200, promoted.text
    assert client.request("PATCH", f"{members}/{own}", json={"role": "viewer"}).status_code == 200
    assert client.delete(f"{members}/{own}").status_code == 204
    assert client.get(f"/projects/{world.project_id}").status_code == 404
    actions = [
        e["action"] for e in world.developer.get(f"/projects/{world.project_id}/audit-logs").json()["entries"]
    ]
    assert actions[:3] == ["member.remove", "member.role", "member.role"]
    assert actions.count("member.add") == 3


def test_adding_members_says_what_is_wrong(client: ApiUser, context: AppContext) -> None:
    world = _world(client, context)
    members = f"/projects/{world.project_id}/members"
    unknown = client.post(members, json={"email": "nobody@example.com", "role": "viewer"})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_account")
    again = client.post(members, json={"email": world.viewer.email, "role": "developer"})
    assert (again.status_code, again.json()["code"]) == (409, "already_member")
    bad_role = client.post(members, json={"email": "newcomer@example.com", "role": "admin"})
    assert bad_role.status_code == 422
    missing = client.request("PATCH", f"{members}/{world.ids[None]}", json={"role": "viewer"})
    assert (missing.status_code, missing.json()["code"]) == (404, "member_not_found")
    entry = client.get(f"/projects/{world.project_id}/audit-logs?action=member.add").json()["entries"][0]
    assert entry["actor_email"] == "owner@example.com"
    assert entry["target_type"] == "member"


def test_the_audit_log_filters_by_actor_and_action_and_cannot_be_changed(
    client: ApiUser, context: AppContext
) -> None:
    world = _world(client, context)
    world.developer.service(world.project_id, name="by-dev", image=IMAGE)
    log = f"/projects/{world.project_id}/audit-logs"
    by_dev = client.get(f"{log}?actor=DEV@example.com").json()["entries"]
    assert [(e["action"], e["actor_email"]) for e in by_dev] == [("service.create", "dev@example.com")]
    owner_adds = client.get(f"{log}?actor=owner@example.com&action=member.add").json()["entries"]
    assert len(owner_adds) == 3
    assert client.get(f"{log}?actor=nobody@example.com").json()["entries"] == []
    # Append-only: the API offers no way to change or delete an entry.
    methods = {m for p, ops in _paths(context).items() if "audit" in p for m in ops}
    assert methods == {"get"}
    for method in ("DELETE", "PUT", "PATCH", "POST"):
        assert client.request(method, log).status_code == 405


def _paths(context: AppContext) -> dict[str, dict[str, object]]:
    from guara.app import create_app

    paths: dict[str, dict[str, object]] = create_app(context).openapi()["paths"]
    return paths
