"""The deployment runner: the background work of each deployment, owned by the application context.

Once a deployment is recorded ``pending`` (``guara.core.deployments.start_deployment``), its task:

0. is owned by this process's runner, which renews its lease (``heartbeat_at``) every few seconds;
   a deployment whose owner is gone is ended as ``interrupted`` by any guara process (``sweep_abandoned``);
1. opens the service's stored credentials (if any) only for this deploy, resolves the image through
   the network guard under one deadline (``GUARA_PREFLIGHT_TIMEOUT_S``) and hands it to the runtime
   (``guara.core.runtimes``): rendered only, applied to Kubernetes, or run on a container engine;
2. writes the final status, the pinned digest, what the runtime reports and the ``service.deploy``
   audit entry in one transaction.

``code`` of a failed deployment: one of the six preflight codes when the image could not be resolved;
else what the runtime says (``apply_failed``, ``start_failed``, ``engine_unavailable``,
``credentials_removed``), ``interrupted`` (guara stopped first) or ``internal_error``. Deployments of
one service run one at a time. No secret is ever written to the row, its message, a log line or the
audit entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from guara import metrics
from guara.core import audit, credentials
from guara.core.accounts import SYSTEM, Principal
from guara.core.errors import CredentialsUnreadable
from guara.core.preflights import RegistryLogin, registry_auth
from guara.core.runtimes import (
    FAILED,
    INTERNAL_ERROR,
    INTERRUPTED,
    PENDING,
    REPLACED,
    RESOLVING,
    DeployJob,
    Outcome,
    RenderRuntime,
    Runtime,
)
from guara.deploy import ResolvedImage, parse_platform, resolve_image
from guara.registry import PreflightCode
from guara.registry.known import advice_for
from guara.secrets import secret_scope
from guara.store.models import ACTIVE_DEPLOYMENT_STATUSES, Deployment, Service, User, utcnow

if TYPE_CHECKING:
    from guara.context import AppContext

logger = logging.getLogger("guara.deploy")

# In progress: what the runner works on. The database allows one such deployment per service.
ACTIVE = frozenset(ACTIVE_DEPLOYMENT_STATUSES)

SHUTDOWN_GRACE_S = 5.0
# A runner renews the lease of its deployments this often; another process ends them as interrupted
# once the lease is this old (or at once when their process is known to be gone).
HEARTBEAT_S = 2.0
LEASE_S = 15.0
# How long a replaced container keeps running after the new one took over (requests in flight).
DRAIN_S = 2.0
# How often what the runtime runs is compared with the database (also at start, and after a sweep).
RECONCILE_EVERY_S = 30.0
MAX_MESSAGE = 2000  # a deployment's message is for people; registries can say a lot
_FINAL_WRITE_BUDGET_S = 10.0

SETTINGS_HINT = "Settings → Private Registry"


@dataclass(frozen=True)
class _Start:
    """What a deployment needs once it leaves ``pending``; ``login`` lives for this deploy only."""

    image: str
    platform: str
    project_id: uuid.UUID
    service_id: uuid.UUID
    service_name: str
    port: int
    health_path: str | None
    login: RegistryLogin | None
    # What was stored when the deploy began (None: no credentials), to notice a removal meanwhile.
    fingerprint: str | None
    unreadable: str | None = None


_INTERRUPTED = Outcome(FAILED, "guara stopped before this deployment finished; deploy again.", INTERRUPTED)


def new_owner() -> str:
    """Who runs a deployment: this host, this process, and this runner within it."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def owner_gone(owner: str | None) -> bool:
    """True when ``owner`` names a process of this host that no longer exists."""
    host, _, rest = (owner or "").partition("/")
    pid_text = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    return False


class DeploymentRunner:
    """Owns the deployments' background tasks: tracked, one at a time per service, and awaited or
    cancelled when the application stops (``aclose``), so no task outlives it. ``runtime`` is where
    resolved images go (render only when None)."""

    def __init__(
        self,
        *,
        runtime: Runtime | None = None,
        shutdown_grace_s: float = SHUTDOWN_GRACE_S,
        heartbeat_s: float = HEARTBEAT_S,
        lease_s: float = LEASE_S,
        drain_s: float = DRAIN_S,
    ) -> None:
        self.runtime: Runtime = runtime if runtime is not None else RenderRuntime()
        self.drain_s = drain_s
        self.shutdown_grace_s = shutdown_grace_s
        self.heartbeat_s = heartbeat_s
        self.lease_s = lease_s
        self.owner = new_owner()
        self.closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._turns: dict[uuid.UUID, tuple[asyncio.Lock, int]] = {}
        self._lease_keepers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    def start(self, ctx: AppContext) -> None:
        """Keep the lease of this runner's deployments alive, and end other processes' abandoned ones,
        until ``aclose`` (one keeper per event loop; idempotent)."""
        loop = asyncio.get_running_loop()
        keeper = self._lease_keepers.get(loop)
        if keeper is None or keeper.done():
            self._lease_keepers[loop] = loop.create_task(self._keep_lease(ctx), name="guara-deploy-lease")

    async def _keep_lease(self, ctx: AppContext) -> None:
        reconciled_at: float | None = None
        while True:
            try:
                await ctx.db.run(lambda session: _renew(session, self.owner))
                ended = await sweep_abandoned(ctx, lease_s=self.lease_s)
                if ended:
                    logger.warning("ended %d deployments whose process stopped as interrupted", ended)
                now = anyio.current_time()
                if ended or reconciled_at is None or now - reconciled_at >= RECONCILE_EVERY_S:
                    reconciled_at = now
                    removed = await self.runtime.reconcile(ctx)
                    if removed:
                        logger.warning("removed %d containers no deployment runs any more", removed)
            except Exception:  # an outage must not end the keeper; the next round retries
                logger.warning("could not renew the deployment lease", exc_info=True)
            await anyio.sleep(self.heartbeat_s)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def spawn(self, ctx: AppContext, deployment_id: uuid.UUID, principal: Principal) -> None:
        self.start(ctx)
        self._track(self._run(ctx, deployment_id, principal), f"guara-deploy-{deployment_id}")

    def _track(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retire_later(self, container_ids: tuple[str, ...]) -> None:
        """Remove the containers a new deployment took over from, after a moment for the requests
        they are still answering (the new one already gets the traffic). Cut short by a shutdown,
        the reconciliation removes them later: a replaced deployment's container never belongs."""
        await anyio.sleep(self.drain_s)
        await self.runtime.retire(container_ids)

    async def wait_idle(self) -> None:
        """Wait until every deployment started on this event loop has finished."""
        while tasks := self._tasks_of_this_loop():
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Wait for running deployments (up to the grace period), cancel the rest; they end
        ``interrupted``. The runner may serve again afterwards (a new app on the same context)."""
        self.closing = True
        try:
            tasks = self._tasks_of_this_loop()
            if tasks:
                _done, pending = await asyncio.wait(tasks, timeout=self.shutdown_grace_s)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
            keeper = self._lease_keepers.pop(asyncio.get_running_loop(), None)
            if keeper is not None:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
        finally:
            self.closing = False

    def _tasks_of_this_loop(self) -> set[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        return {task for task in self._tasks if task.get_loop() is loop}

    @contextlib.asynccontextmanager
    async def _turn(self, service_id: uuid.UUID) -> AsyncIterator[None]:
        lock, users = self._turns.get(service_id) or (asyncio.Lock(), 0)
        self._turns[service_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[service_id]
            if users <= 1:
                del self._turns[service_id]
            else:
                self._turns[service_id] = (lock, users - 1)

    async def _run(self, ctx: AppContext, deployment_id: uuid.UUID, principal: Principal) -> None:
        # Its own scope: the password opened for this deploy is scrubbed from its log lines only.
        with secret_scope():
            try:
                service_id = await ctx.db.run(lambda s: _service_of(s, deployment_id))
                if service_id is None:
                    return
                async with self._turn(service_id):
                    outcome = await self._deploy(ctx, deployment_id)
                    if outcome is not None:
                        took = await ctx.db.run(lambda s: _finish(s, deployment_id, principal, outcome))
                        _count(outcome, took)
                        if outcome.retired_containers:
                            self._track(self._retire_later(outcome.retired_containers), "guara-retire")
            except asyncio.CancelledError:
                await _finish_shielded(ctx, deployment_id, principal, _INTERRUPTED)
                raise
            except Exception:
                logger.exception("deployment %s failed unexpectedly", deployment_id)
                crashed = Outcome(
                    FAILED, "guara failed while deploying (see the server log); deploy again.", INTERNAL_ERROR
                )
                await _finish_shielded(ctx, deployment_id, principal, crashed)

    async def _deploy(self, ctx: AppContext, deployment_id: uuid.UUID) -> Outcome | None:
        start = await ctx.db.run(lambda s: _begin(ctx, s, deployment_id))
        if start is None:
            return None  # the service (and its deployments) was deleted meanwhile
        if start.unreadable is not None:
            return Outcome(FAILED, start.unreadable, PreflightCode.AUTH_FAILED.value)
        login = start.login
        resolution = await resolve_image(
            start.image,
            platform=parse_platform(start.platform),
            options=ctx.registry,
            **registry_auth(login),
        )
        if not isinstance(resolution, ResolvedImage):
            message = resolution.message.rstrip(".") + "."
            if not resolution.unusable:
                message += _hint(resolution.code, login.registry if login else None)
            return Outcome(FAILED, message, resolution.code.value)
        if login is not None and resolution.exchanged is not None:
            # A cloud key: the runtime pulls with the short-lived login it was just exchanged for.
            exchanged = resolution.exchanged
            login = RegistryLogin(login.registry, exchanged.username, exchanged.password)
        job = DeployJob(
            deployment_id=deployment_id,
            project_id=start.project_id,
            service_id=start.service_id,
            service_name=start.service_name,
            port=start.port,
            health_path=start.health_path,
            image=resolution,
            login=login,
            fingerprint=start.fingerprint,
        )
        return await self.runtime.deploy(ctx, job)


async def sweep_abandoned(ctx: AppContext, *, lease_s: float = LEASE_S) -> int:
    """End the deployments whose process is gone as ``interrupted``: their lease ran out, or their owner
    was a process of this host that no longer exists. Returns how many."""

    def work(session: Session) -> int:
        cutoff = utcnow() - timedelta(seconds=lease_s)
        rows = session.scalars(select(Deployment).where(Deployment.status.in_(ACTIVE))).all()
        for row in rows:
            alive_at = row.heartbeat_at or row.updated_at
            if alive_at >= cutoff and not owner_gone(row.owner):
                continue
            creator = session.get(User, row.created_by) if row.created_by else None
            principal = Principal(creator.id, creator.email) if creator else SYSTEM
            took.append(_finish(session, row.id, principal, _INTERRUPTED))
        return len(took)

    took: list[float | None] = []
    ended = await ctx.db.run(work)
    for seconds in took:
        _count(_INTERRUPTED, seconds)
    return ended


async def _finish_shielded(
    ctx: AppContext, deployment_id: uuid.UUID, principal: Principal, outcome: Outcome
) -> None:
    """Record the end even while being cancelled (bounded: a stuck database must not block shutdown)."""
    with anyio.CancelScope(shield=True) as scope:
        scope.deadline = anyio.current_time() + _FINAL_WRITE_BUDGET_S
        try:
            took = await ctx.db.run(lambda s: _finish(s, deployment_id, principal, outcome))
        except Exception:
            logger.exception("could not record the end of deployment %s", deployment_id)
        else:
            _count(outcome, took)


def _hint(code: PreflightCode, registry: str | None) -> str:
    """What to check after a failed resolution; ``registry`` is the credentials' (None without any)."""
    if code is PreflightCode.INVALID_URL and registry is not None:
        return f" Check the service's registry credentials in {SETTINGS_HINT}."
    if code not in (PreflightCode.AUTH_FAILED, PreflightCode.MANIFEST_NOT_FOUND):
        return ""
    if registry is None:
        return (
            " This service has no registry credentials: if the image is private, add the credentials "
            f"back in the service's {SETTINGS_HINT}, then deploy again."
        )
    if code is PreflightCode.AUTH_FAILED:
        hint = f" Check the service's registry credentials in {SETTINGS_HINT}: they may have been revoked."
    else:
        hint = f" Check the image reference, and that the credentials in {SETTINGS_HINT} can read it."
    known = advice_for(registry, code.value)
    return f"{hint} {known}" if known else hint


# --- database steps (each runs in a worker thread, in its own transaction) ------------------------------


def _renew(session: Session, owner: str) -> None:
    session.execute(
        update(Deployment)
        .where(Deployment.owner == owner, Deployment.status.in_(ACTIVE))
        .values(heartbeat_at=utcnow())
    )


def _service_of(session: Session, deployment_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalar(select(Deployment.service_id).where(Deployment.id == deployment_id))


def _begin(ctx: AppContext, session: Session, deployment_id: uuid.UUID) -> _Start | None:
    row = session.get(Deployment, deployment_id)
    service = session.get(Service, row.service_id) if row is not None else None
    if row is None or service is None or row.status != PENDING:
        return None
    unreadable: str | None = None
    try:
        login = credentials.open_stored(ctx, session, service_id=service.id)
    except CredentialsUnreadable as exc:
        login, unreadable = None, f"{exc.message} ({SETTINGS_HINT})."
    row.status = RESOLVING
    row.with_credentials = login is not None or unreadable is not None
    how = "with the stored registry credentials" if row.with_credentials else "anonymously"
    row.message = f"Resolving {row.image} for {row.platform} {how}."
    row.updated_at = utcnow()
    return _Start(
        image=row.image,
        platform=row.platform,
        project_id=row.project_id,
        service_id=service.id,
        service_name=service.name,
        port=service.port,
        health_path=service.health_path,
        login=login,
        fingerprint=credentials.fingerprint(session, service_id=service.id),
        unreadable=unreadable,
    )


def _count(outcome: Outcome, took: float | None) -> None:
    """Count a deployment that ``_finish`` ended (``took`` is None when it had already ended)."""
    if took is not None:
        metrics.count_deployment(outcome.status, took)


def _finish(
    session: Session, deployment_id: uuid.UUID, principal: Principal, outcome: Outcome
) -> float | None:
    """Write the final status and its ``service.deploy`` audit entry in one transaction. Returns the
    seconds since the deployment was created; None when it had already ended (nothing written)."""
    row = session.get(Deployment, deployment_id)
    service = session.get(Service, row.service_id) if row is not None else None
    if row is None or service is None or row.status not in ACTIVE:
        return None
    row.status = outcome.status
    row.code = outcome.code
    row.message = outcome.message[:MAX_MESSAGE]
    row.digest = outcome.digest
    row.manifests = outcome.manifests
    row.container_id = outcome.container_id
    row.url = outcome.url
    row.started_at = outcome.started_at
    row.updated_at = utcnow()
    if outcome.replaced:
        session.execute(
            update(Deployment)
            .where(Deployment.id.in_(outcome.replaced), Deployment.service_id == row.service_id)
            .values(status=REPLACED, url=None, updated_at=utcnow())
        )
    event = audit.Deployed(
        deployment_id=str(row.id),
        status=row.status,
        digest=row.digest,
        with_credentials=row.with_credentials,
        code=row.code,
        image=row.image,
        platform=row.platform,
    )
    audit.record(session, principal=principal, service=service, event=event)
    logger.info(
        "deployment %s of service %s %s code=%s digest=%s",
        row.id,
        service.id,
        row.status,
        row.code or "-",
        row.digest or "-",
    )
    return (row.updated_at - row.created_at).total_seconds()
