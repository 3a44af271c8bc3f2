"""Project webhooks: where health notifications go (failing, recovered, expiring, tag moved), signed
the way Stripe and GitHub sign theirs, delivered in the background through the network guard.

Each delivery is its own task with a short timeout per attempt and a few retries with backoff, so a
hanging receiver delays nothing else. Every attempt dials through ``guara.netguard`` (a user chooses
the URL): a refused address never gets a connection, and the refusal is what the delivery log says.
The signing secret is sealed like a registry password and never returned.

Signature header: ``X-Guara-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from pydantic import SecretStr
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from guara.core import audit
from guara.core.access import project_of
from guara.core.accounts import Principal
from guara.core.credential_health import Transition
from guara.core.errors import CredentialsUnreadable, InvalidInput, NotFound
from guara.core.roles import Action
from guara.netguard import DestinationBlocked, DisallowedURL, NetGuardError, guarded_transport
from guara.secrets import (
    ProjectKeys,
    UnreadableSecret,
    envelope_key_version,
    open_secret,
    register_secret,
    seal,
    secret_scope,
)
from guara.store.models import ProjectWebhook, WebhookDelivery, utcnow

if TYPE_CHECKING:
    from guara.context import AppContext

log = logging.getLogger("guara.webhooks")

SECRET_FIELD = "webhook_secret"  # noqa: S105  (a field name bound into the AAD)
# Sealed per project, not per service: a fixed id in the service slot of the associated data.
SECRET_OWNER = "project-webhook"  # noqa: S105
SIGNATURE_HEADER = "X-Guara-Signature"
MAX_URL = 2048
MAX_SECRET = 512
ATTEMPTS = 3
TIMEOUT_S = 5.0
BACKOFF_S = 1.0
LOG_KEPT = 50

# The webhook event of each audit event that notifies.
EVENTS: dict[str, str] = {
    audit.AuditAction.CREDENTIALS_CHECK_FAILED.value: "credentials.failing",
    audit.AuditAction.CREDENTIALS_CHECK_RECOVERED.value: "credentials.recovered",
    audit.AuditAction.CREDENTIALS_EXPIRING.value: "credentials.expiring",
    audit.AuditAction.SERVICE_TAG_MOVED.value: "service.tag_moved",
}


@dataclass(frozen=True)
class DeliveryView:
    id: int
    event: str
    service_id: uuid.UUID | None
    status: str
    attempts: int
    response_status: int | None
    error: str
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class WebhookView:
    """A project's webhook as its members see it: never the secret."""

    url: str
    has_secret: bool
    updated_at: datetime
    deliveries: list[DeliveryView]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def webhook_url(value: str) -> str:
    """An absolute http(s) URL with a host and no credentials in it (where it points is the guard's
    business at each delivery)."""
    text = value.strip()
    if not text or len(text) > MAX_URL or any(ord(ch) < 33 or ord(ch) == 127 for ch in text):
        raise InvalidInput(f"the webhook URL must be 1 to {MAX_URL} printable characters", field="url")
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        raise InvalidInput("the webhook URL is not a valid URL", field="url") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidInput("the webhook URL must be an http:// or https:// URL with a host", field="url")
    if url.userinfo:
        raise InvalidInput("the webhook URL must not contain a user name or password", field="url")
    return str(url)


def webhook_secret(value: SecretStr) -> SecretStr:
    register_secret(value)
    raw = value.get_secret_value()
    if not 16 <= len(raw) <= MAX_SECRET or any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise InvalidInput(
            f"the signing secret must be 16 to {MAX_SECRET} printable characters", field="secret"
        )
    return value


def _keys(ctx: AppContext) -> ProjectKeys:
    return ProjectKeys(ctx.keyring)


def _deliveries(session: Session, project_id: uuid.UUID) -> list[DeliveryView]:
    rows = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.project_id == project_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(LOG_KEPT)
    )
    return [
        DeliveryView(
            row.id,
            row.event,
            row.service_id,
            row.status,
            row.attempts,
            row.response_status,
            row.error,
            row.created_at,
            row.finished_at,
        )
        for row in rows
    ]


def _view(session: Session, row: ProjectWebhook) -> WebhookView:
    return WebhookView(row.url, bool(row.secret_sealed), row.updated_at, _deliveries(session, row.project_id))


async def set_webhook(
    ctx: AppContext, principal: Principal, *, project_id: uuid.UUID, url: str, secret: SecretStr
) -> WebhookView:
    def work(session: Session) -> WebhookView:
        project, _role = project_of(
            session, principal=principal, project_id=project_id, action=Action.WEBHOOK_MANAGE
        )
        chosen_url = webhook_url(url)
        chosen_secret = webhook_secret(secret)
        sealed = seal(
            _keys(ctx), chosen_secret, project_id=str(project.id), service_id=SECRET_OWNER, field=SECRET_FIELD
        )
        row = session.get(ProjectWebhook, project.id)
        if row is None:
            row = ProjectWebhook(project_id=project.id)
            session.add(row)
        row.url, row.secret_sealed = chosen_url, sealed
        row.key_version = envelope_key_version(sealed)
        row.updated_at = utcnow()
        session.flush()
        return _view(session, row)

    return await ctx.db.run(work)


async def get_webhook(ctx: AppContext, principal: Principal, *, project_id: uuid.UUID) -> WebhookView:
    def work(session: Session) -> WebhookView:
        project, _role = project_of(
            session, principal=principal, project_id=project_id, action=Action.WEBHOOK_READ
        )
        row = session.get(ProjectWebhook, project.id)
        if row is None:
            raise NotFound("this project has no webhook")
        return _view(session, row)

    return await ctx.db.run(work)


async def remove_webhook(ctx: AppContext, principal: Principal, *, project_id: uuid.UUID) -> bool:
    """Remove the project's webhook and its delivery log; False when it had none."""

    def work(session: Session) -> bool:
        project, _role = project_of(
            session, principal=principal, project_id=project_id, action=Action.WEBHOOK_MANAGE
        )
        removed = session.execute(delete(ProjectWebhook).where(ProjectWebhook.project_id == project.id))
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.project_id == project.id))
        return bool(getattr(removed, "rowcount", 0))

    return await ctx.db.run(work)


# --- delivering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    url: str
    secret: SecretStr
    delivery_id: int


class WebhookSender:
    """Delivers notifications in background tasks owned by the application context."""

    def __init__(
        self,
        *,
        attempts: int = ATTEMPTS,
        timeout_s: float = TIMEOUT_S,
        backoff_s: float = BACKOFF_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    def dispatch(self, ctx: AppContext, transition: Transition | None) -> None:
        """Send each notifying event of ``transition`` to its project's webhook, in the background."""
        if transition is None:
            return
        for event in transition.events:
            name = EVENTS.get(event.action.value)
            if name is None:
                continue
            body = {
                "event": name,
                "project_id": str(transition.project_id),
                "service_id": str(transition.service_id),
                "service_name": transition.service_name,
                "occurred_at": utcnow().isoformat(),
                "data": event.details(),
            }
            task = asyncio.get_running_loop().create_task(
                self._deliver(ctx, transition.project_id, transition.service_id, name, body),
                name=f"guara-webhook-{name}",
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while tasks := {task for task in self._tasks if task.get_loop() is loop}:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        tasks = {task for task in self._tasks if task.get_loop() is loop}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(
        self, ctx: AppContext, project_id: uuid.UUID, service_id: uuid.UUID, event: str, body: dict[str, Any]
    ) -> None:
        with secret_scope():  # the signing secret opened here is scrubbed from this task's logs
            try:
                target = await ctx.db.run(lambda session: _start(ctx, session, project_id, service_id, event))
                if target is None:
                    return
                try:
                    status, attempts, error = await self._attempts(ctx, target, json.dumps(body).encode())
                except asyncio.CancelledError:
                    # guara is stopping: the log says so rather than "pending" for ever.
                    with anyio.CancelScope(shield=True):
                        stopped = "interrupted: guara stopped before the delivery finished"
                        await ctx.db.run(
                            lambda session: _finish(session, target.delivery_id, None, 0, stopped)
                        )
                    raise
                await ctx.db.run(
                    lambda session: _finish(session, target.delivery_id, status, attempts, error)
                )
            except Exception:
                log.warning("webhook delivery of %s for project %s failed", event, project_id, exc_info=True)

    async def _attempts(self, ctx: AppContext, target: _Target, raw: bytes) -> tuple[int | None, int, str]:
        """(last HTTP status, attempts made, why it failed or "")."""
        status: int | None = None
        error = ""
        made = 0
        transport = guarded_transport(ctx.registry.guard_policy(), ssl_context=ctx.registry.ssl_context())
        async with httpx.AsyncClient(
            transport=transport, trust_env=False, follow_redirects=False, timeout=self.timeout_s
        ) as client:
            for attempt in range(self.attempts):
                if attempt:
                    await anyio.sleep(self.backoff_s * 2 ** (attempt - 1))
                made += 1
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "guara-webhooks",
                    SIGNATURE_HEADER: sign(target.secret.get_secret_value(), int(self.clock()), raw),
                }
                try:
                    with anyio.fail_after(self.timeout_s):
                        answer = await client.post(target.url, content=raw, headers=headers)
                except (DestinationBlocked, DisallowedURL) as exc:
                    return None, made, f"ssrf_blocked: {exc}"  # a refusal does not change on retry
                except NetGuardError as exc:
                    status, error = None, f"network_error: {exc}"
                    continue
                except (TimeoutError, httpx.TimeoutException):
                    status, error = None, f"timeout: no answer within {self.timeout_s:g} s"
                    continue
                except httpx.HTTPError as exc:
                    status, error = None, f"network_error: {type(exc).__name__}"
                    continue
                status = answer.status_code
                if 200 <= status < 300:
                    return status, made, ""
                error = f"http_error: the receiver answered {status}"
                if status < 500 and status != 429:
                    break  # the receiver refuses this request: sending it again changes nothing
        return status, made, error


def _start(
    ctx: AppContext, session: Session, project_id: uuid.UUID, service_id: uuid.UUID, event: str
) -> _Target | None:
    """The project's webhook with its secret opened, and a pending entry in its log (None: none)."""
    row = session.get(ProjectWebhook, project_id)
    if row is None:
        return None
    delivery = WebhookDelivery(
        project_id=project_id, event=event, service_id=service_id, status="pending", attempts=0, error=""
    )
    session.add(delivery)
    session.flush()
    try:
        secret = open_secret(
            _keys(ctx),
            row.secret_sealed,
            project_id=str(project_id),
            service_id=SECRET_OWNER,
            field=SECRET_FIELD,
        )
    except UnreadableSecret as exc:
        delivery.status, delivery.finished_at = "failed", utcnow()
        delivery.error = (
            f"{CredentialsUnreadable.code}: the signing secret cannot be read ({exc}); set it again"
        )
        return None
    register_secret(secret)
    old = session.scalars(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.project_id == project_id)
        .order_by(WebhookDelivery.id.desc())
        .offset(LOG_KEPT)
    ).all()
    if old:
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(old)))
    return _Target(row.url, secret, delivery.id)


def _finish(session: Session, delivery_id: int, status: int | None, attempts: int, error: str) -> None:
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:  # the webhook was removed meanwhile
        return
    row.status = "failed" if error else "delivered"
    row.attempts = attempts or row.attempts
    row.response_status, row.error = status, error[:2000]
    row.finished_at = utcnow()
