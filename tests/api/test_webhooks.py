"""Project webhooks: the API (the secret never comes back), signed deliveries of health transitions to
a loopback receiver, the network guard (a blocked address never gets a connection), bounded retries,
and a hanging receiver that delays no other delivery."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from guara.context import AppContext
from guara.core import accounts, audit, projects, webhooks
from guara.core.credential_health import Transition
from tests.api.test_credential_health import PASSWORD, _check_on_app_loop, _service_with_credentials
from tests.conftest import build_context
from tests.lab import Lab
from tests.lab.lab import OwnRegistry, own_registry
from tests.netguard.servers import bare_listener
from tests.support import ApiUser

SECRET = "whsec-canary-7f3a9c1e5b2d4680"  # noqa: S105


@dataclass
class Receiver:
    """An HTTP server on loopback that records each POST; ``statuses`` are answered in turn (then 200);
    with ``hold`` set it answers nothing until ``hold`` is released."""

    url: str
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    got: threading.Event = field(default_factory=threading.Event)
    hold: threading.Event | None = None


@contextlib.contextmanager
def receiver(statuses: list[int] | None = None, *, hold: threading.Event | None = None) -> Iterator[Receiver]:
    record = Receiver(url="", statuses=list(statuses or []), hold=hold)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            record.bodies.append(body)
            record.headers.append({k.lower(): v for k, v in self.headers.items()})
            record.got.set()
            if record.hold is not None:
                record.hold.wait(60)
            status = record.statuses.pop(0) if record.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    record.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/guara"
    try:
        yield record
    finally:
        if hold is not None:
            hold.set()
        server.shutdown()
        server.server_close()
        thread.join()


def verify(header: str, body: bytes, secret: str = SECRET) -> bool:
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def _until_finished(client: ApiUser, project_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        deliveries: list[dict[str, Any]] = client.get(f"/projects/{project_id}/webhook").json()["deliveries"]
        if len([d for d in deliveries if d["status"] != "pending"]) >= count:
            return deliveries
        assert time.monotonic() < deadline, deliveries
        time.sleep(0.02)


def test_webhook_api_never_shows_the_secret(client: ApiUser) -> None:
    project_id = client.project()
    assert client.get(f"/projects/{project_id}/webhook").status_code == 404
    saved = client.put(
        f"/projects/{project_id}/webhook", json={"url": "https://hooks.example.com/guara", "secret": SECRET}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json() == {
        "url": "https://hooks.example.com/guara",
        "has_secret": True,
        "updated_at": saved.json()["updated_at"],
        "deliveries": [],
    }
    shown = client.get(f"/projects/{project_id}/webhook")
    assert shown.status_code == 200 and SECRET not in shown.text
    assert client.delete(f"/projects/{project_id}/webhook").status_code == 204
    assert client.get(f"/projects/{project_id}/webhook").status_code == 404
    assert client.delete(f"/projects/{project_id}/webhook").status_code == 404
    assert (
        client.put(
            f"/projects/{uuid.uuid4()}/webhook", json={"url": "https://a.example", "secret": SECRET}
        ).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"url": "ftp://hooks.example.com/", "secret": SECRET}, "url"),
        ({"url": "https://user:pw@hooks.example.com/", "secret": SECRET}, "url"),
        ({"url": "not a url", "secret": SECRET}, "url"),
        ({"url": "https://hooks.example.com/\x00", "secret": SECRET}, "url"),
        ({"url": "https://hooks.example.com/", "secret": "short"}, None),
        ({"url": "https://hooks.example.com/", "secret": SECRET, "extra": 1}, None),
    ],
)
def test_hostile_webhook_input_is_a_clear_error(
    client: ApiUser, body: dict[str, Any], field_name: str | None
) -> None:
    project_id = client.project()
    response = client.put(f"/projects/{project_id}/webhook", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] in ("invalid_input", "validation_error")
    if field_name is not None:
        assert response.json()["field"] == field_name
    assert SECRET not in response.text


@pytest.fixture
def registry(lab: Lab, tmp_path: Path) -> Iterator[OwnRegistry]:
    with own_registry(lab, tmp_path / "own", {"deployer": PASSWORD}) as own:
        own.registry.push_image("acme/api:v1")
        yield own


@pytest.mark.lab
def test_failing_and_recovered_credentials_are_delivered_signed(
    lab_client: ApiUser, lab_context: AppContext, registry: OwnRegistry
) -> None:
    project_id, service_id = _service_with_credentials(lab_client, registry)
    with receiver() as hook:
        saved = lab_client.put(f"/projects/{project_id}/webhook", json={"url": hook.url, "secret": SECRET})
        assert saved.status_code == 200, saved.text
        _check_on_app_loop(lab_client, lab_context, service_id)  # passing: nothing to say
        registry.set_users({"deployer": "rotated-by-the-registry-admin"})
        _check_on_app_loop(lab_client, lab_context, service_id)
        [failing] = _until_finished(lab_client, project_id, 1)
        assert (failing["event"], failing["status"], failing["attempts"]) == (
            "credentials.failing",
            "delivered",
            1,
        )
        registry.set_users({"deployer": PASSWORD})
        _check_on_app_loop(lab_client, lab_context, service_id)
        recovered, _failing = _until_finished(lab_client, project_id, 2)
        assert recovered["event"] == "credentials.recovered" and recovered["response_status"] == 200
    assert len(hook.bodies) == 2
    for body, headers in zip(hook.bodies, hook.headers, strict=True):
        assert verify(headers["x-guara-signature"], body)
        assert not verify(headers["x-guara-signature"], body + b" ")
        assert headers["content-type"] == "application/json"
    first = json.loads(hook.bodies[0])
    assert first["event"] == "credentials.failing"
    assert first["service_id"] == service_id and first["project_id"] == project_id
    assert first["data"]["code"] == "auth_failed"
    assert json.loads(hook.bodies[1])["event"] == "credentials.recovered"
    for body in hook.bodies:
        assert PASSWORD.encode() not in body and SECRET.encode() not in body


def _failing(project_id: uuid.UUID) -> Transition:
    event = audit.CheckFailed("ghcr.io", "auth_failed", "the registry rejected these credentials")
    return Transition(uuid.uuid4(), project_id, "api", (event,))


@pytest.fixture
def loopback_only(settings_env: dict[str, str]) -> Iterator[AppContext]:
    """A context whose guard exempts 127.0.0.1 only: 127.0.0.2 stays refused."""
    context = build_context({**settings_env, "GUARA_SSRF_ALLOW": "127.0.0.1/32"})
    context.webhooks.backoff_s = 0.001
    yield context
    context.db.dispose()


def _project(context: AppContext, name: str) -> tuple[accounts.Principal, uuid.UUID]:
    async def make() -> tuple[accounts.Principal, uuid.UUID]:
        email = f"{name}@example.com"
        owner = await accounts.create_user(context, email=email, password="long enough pw")
        project = await projects.create_project(context, owner, name=name)
        return owner, project.id

    return anyio.run(make)


def test_a_blocked_address_never_gets_a_connection(loopback_only: AppContext, socket_audit: Any) -> None:
    context = loopback_only
    owner, project_id = _project(context, "blocked")
    with bare_listener("127.0.0.2") as canary:

        async def deliver() -> webhooks.WebhookView:
            url = f"http://127.0.0.2:{canary.port}/hook"
            await webhooks.set_webhook(
                context, owner, project_id=project_id, url=url, secret=SecretStr(SECRET)
            )
            context.webhooks.dispatch(context, _failing(project_id))
            await context.webhooks.wait_idle()
            return await webhooks.get_webhook(context, owner, project_id=project_id)

        view = anyio.run(deliver)
        assert canary.arrived() == 0
    [delivery] = view.deliveries
    assert delivery.status == "failed" and delivery.attempts == 1
    assert delivery.error.startswith("ssrf_blocked: 127.0.0.2")
    assert socket_audit.connections == []


def test_retries_are_bounded_and_back_off(loopback_only: AppContext) -> None:
    context = loopback_only
    owner, project_id = _project(context, "retries")
    with receiver([503, 503, 503, 503]) as hook:

        async def deliver() -> webhooks.WebhookView:
            await webhooks.set_webhook(
                context, owner, project_id=project_id, url=hook.url, secret=SecretStr(SECRET)
            )
            context.webhooks.dispatch(context, _failing(project_id))
            await context.webhooks.wait_idle()
            return await webhooks.get_webhook(context, owner, project_id=project_id)

        view = anyio.run(deliver)
    [delivery] = view.deliveries
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("failed", 3, 503)
    assert len(hook.bodies) == 3


def test_a_refusing_receiver_is_not_retried_and_a_flaky_one_is(loopback_only: AppContext) -> None:
    context = loopback_only
    owner, project_id = _project(context, "refusing")
    with receiver([400]) as refusing, receiver([502]) as flaky:

        async def deliver(url: str) -> webhooks.WebhookView:
            await webhooks.set_webhook(
                context, owner, project_id=project_id, url=url, secret=SecretStr(SECRET)
            )
            context.webhooks.dispatch(context, _failing(project_id))
            await context.webhooks.wait_idle()
            return await webhooks.get_webhook(context, owner, project_id=project_id)

        refused = anyio.run(deliver, refusing.url).deliveries[0]
        recovered = anyio.run(deliver, flaky.url).deliveries[0]
    assert (refused.status, refused.attempts, refused.response_status) == ("failed", 1, 400)
    assert (recovered.status, recovered.attempts, recovered.response_status) == ("delivered", 2, 200)


def test_a_hanging_receiver_delays_no_other_delivery(loopback_only: AppContext) -> None:
    context = loopback_only
    context.webhooks.timeout_s = 60  # only the release below ends the hanging delivery
    slow_owner, slow_project = _project(context, "slow")
    fast_owner, fast_project = _project(context, "fast")
    release = threading.Event()
    with receiver(hold=release) as hanging, receiver() as fast:

        async def deliver() -> tuple[webhooks.WebhookView, webhooks.WebhookView]:
            secret = SecretStr(SECRET)
            await webhooks.set_webhook(
                context, slow_owner, project_id=slow_project, url=hanging.url, secret=secret
            )
            await webhooks.set_webhook(
                context, fast_owner, project_id=fast_project, url=fast.url, secret=secret
            )
            context.webhooks.dispatch(context, _failing(slow_project))
            await anyio.to_thread.run_sync(hanging.got.wait, 30)  # the slow one is stuck in its receiver
            context.webhooks.dispatch(context, _failing(fast_project))
            await anyio.to_thread.run_sync(fast.got.wait, 30)
            while (await webhooks.get_webhook(context, fast_owner, project_id=fast_project)).deliveries[
                0
            ].status == "pending":
                await anyio.sleep(0.01)
            done = await webhooks.get_webhook(context, fast_owner, project_id=fast_project)
            stuck = await webhooks.get_webhook(context, slow_owner, project_id=slow_project)
            release.set()
            await context.webhooks.wait_idle()
            return done, stuck

        done, stuck = anyio.run(deliver)
    assert done.deliveries[0].status == "delivered"
    assert stuck.deliveries[0].status == "pending"


def test_a_delivery_cut_short_by_a_shutdown_is_logged_as_interrupted(loopback_only: AppContext) -> None:
    context = loopback_only
    context.webhooks.timeout_s = 60
    owner, project_id = _project(context, "shutdown")
    release = threading.Event()
    with receiver(hold=release) as hanging:

        async def deliver() -> webhooks.WebhookView:
            secret = SecretStr(SECRET)
            await webhooks.set_webhook(context, owner, project_id=project_id, url=hanging.url, secret=secret)
            context.webhooks.dispatch(context, _failing(project_id))
            await anyio.to_thread.run_sync(hanging.got.wait, 30)
            await context.stop_background_work()
            return await webhooks.get_webhook(context, owner, project_id=project_id)

        view = anyio.run(deliver)
    [delivery] = view.deliveries
    assert delivery.status == "failed"
    assert delivery.error.startswith("interrupted:")
