"""The deployment runner: the background work of each deployment, owned by the application context.

Once a deployment is recorded ``pending`` (``guara.core.deployments.start_deployment``), its task:

0. is owned by this process's runner, which renews its lease (``heartbeat_at``) every few seconds;
   a deployment whose owner is gone is ended as ``interrupted`` by any guara process (``sweep_abandoned``);
1. opens the service's stored credentials (if any) only for this deploy, resolves the image through
   the network guard under one deadline (``GUARA_PREFLIGHT_TIMEOUT_S``), renders the Kubernetes
   objects and, with ``GUARA_RUNTIME=kubernetes``, applies them;
2. writes the final status, the pinned digest, the redacted manifests and the ``service.deploy`` audit
   entry in one transaction.

``code`` of a failed deployment: one of the six preflight codes when the image could not be resolved;
else ``apply_failed`` (the cluster refused or was unreachable), ``interrupted`` (guara stopped first),
``credentials_removed`` (they were removed or replaced while it ran: nothing of them is left applied)
or ``internal_error``. Deployments of one service run one at a time, in the order they were started.
No secret is ever written to the row, its message, a log line or the audit entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from guara.core import audit, credentials
from guara.core.accounts import SYSTEM, Principal
from guara.core.errors import CredentialsUnreadable
from guara.core.preflights import RegistryLogin
from guara.deploy import (
    ApplyFailed,
    DeployError,
    ManifestApplier,
    PullCredentials,
    RenderedWorkload,
    ResolvedImage,
    parse_platform,
    pull_secret_ref,
    render_workload,
    resolve_image,
)
from guara.registry import InvalidRegistry, PreflightCode, parse_registry
from guara.secrets import secret_scope
from guara.store.models import ACTIVE_DEPLOYMENT_STATUSES, Deployment, Service, User, utcnow

if TYPE_CHECKING:
    from guara.context import AppContext

logger = logging.getLogger("guara.deploy")

PENDING = "pending"
RESOLVING = "resolving"
SUCCEEDED = "succeeded"
FAILED = "failed"
STARTING = "starting"
# In progress: what the runner works on. The database allows one such deployment per service.
ACTIVE = frozenset(ACTIVE_DEPLOYMENT_STATUSES)

APPLY_FAILED = "apply_failed"
INTERRUPTED = "interrupted"
INTERNAL_ERROR = "internal_error"

CREDENTIALS_REMOVED = "credentials_removed"

SHUTDOWN_GRACE_S = 5.0
# A runner renews the lease of its deployments this often; another process ends them as interrupted
# once the lease is this old (or at once when their process is known to be gone).
HEARTBEAT_S = 2.0
LEASE_S = 15.0
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
    login: RegistryLogin | None
    # What was stored when the deploy began (None: no credentials); compared again before and after
    # applying, so credentials removed meanwhile are not put back.
    fingerprint: str | None
    unreadable: str | None = None


@dataclass(frozen=True)
class _Outcome:
    status: str
    message: str
    code: str | None = None
    digest: str | None = None
    manifests: list[dict[str, Any]] | None = None


_INTERRUPTED = _Outcome(FAILED, "guara stopped before this deployment finished; deploy again.", INTERRUPTED)
_REMOVED_MESSAGE = (
    "The service's registry credentials were removed or replaced while this deployment ran, so it "
    "stopped{what}; deploy again to use the current ones."
)


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
    cancelled when the application stops (``aclose``), so no task outlives it. ``applier`` is where
    workloads go (a cluster), or None to render only."""

    def __init__(
        self,
        *,
        applier: ManifestApplier | None,
        shutdown_grace_s: float = SHUTDOWN_GRACE_S,
        heartbeat_s: float = HEARTBEAT_S,
        lease_s: float = LEASE_S,
    ) -> None:
        self.applier = applier
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
        while True:
            try:
                await ctx.db.run(lambda session: _renew(session, self.owner))
                ended = await sweep_abandoned(ctx, lease_s=self.lease_s)
                if ended:
                    logger.warning("ended %d deployments whose process stopped as interrupted", ended)
            except Exception:  # a database outage must not end the keeper; the next round retries
                logger.warning("could not renew the deployment lease", exc_info=True)
            await anyio.sleep(self.heartbeat_s)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def spawn(self, ctx: AppContext, deployment_id: uuid.UUID, principal: Principal) -> None:
        self.start(ctx)
        task = asyncio.get_running_loop().create_task(
            self._run(ctx, deployment_id, principal), name=f"guara-deploy-{deployment_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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

    async def withdraw_pull_secret(self, project_id: uuid.UUID, service_name: str) -> str:
        """Delete the pull Secret of removed credentials from the cluster; a note for the user."""
        if self.applier is None:
            return ""
        try:
            await self.applier.apply([], absent=[pull_secret_ref(project_id, service_name)])
        except ApplyFailed as exc:
            logger.warning("could not delete the pull Secret of service %s: %s", service_name, exc)
            return (
                f"The pull Secret could not be deleted from the cluster yet ({exc}); "
                "the next deploy removes it."
            )
        return "Its pull Secret was deleted from the cluster."

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
                        await ctx.db.run(lambda s: _finish(s, deployment_id, principal, outcome))
            except asyncio.CancelledError:
                await _finish_shielded(ctx, deployment_id, principal, _INTERRUPTED)
                raise
            except Exception:
                logger.exception("deployment %s failed unexpectedly", deployment_id)
                crashed = _Outcome(
                    FAILED, "guara failed while deploying (see the server log); deploy again.", INTERNAL_ERROR
                )
                await _finish_shielded(ctx, deployment_id, principal, crashed)

    async def _deploy(self, ctx: AppContext, deployment_id: uuid.UUID) -> _Outcome | None:
        start = await ctx.db.run(lambda s: _begin(ctx, s, deployment_id))
        if start is None:
            return None  # the service (and its deployments) was deleted meanwhile
        if start.unreadable is not None:
            return _Outcome(FAILED, start.unreadable, PreflightCode.AUTH_FAILED.value)
        login = start.login
        resolution = await resolve_image(
            start.image,
            platform=parse_platform(start.platform),
            options=ctx.registry,
            registry=login.registry if login else None,
            username=login.username if login else None,
            password=login.password if login else None,
        )
        if not isinstance(resolution, ResolvedImage):
            message = resolution.message.rstrip(".") + "."
            if not resolution.unusable:
                message += _hint(resolution.code, login is not None)
            return _Outcome(FAILED, message, resolution.code.value)
        # Rendering validates with the kubernetes models (CPU, and a heavy first import): off the loop.
        rendered = await anyio.to_thread.run_sync(
            functools.partial(
                render_workload,
                resolution,
                project_id=start.project_id,
                service_id=start.service_id,
                service_name=start.service_name,
                deployment_id=deployment_id,
                credentials=_pull_credentials(login),
            )
        )
        manifests = rendered.redacted()
        summary = _summary(resolution, rendered)
        if self.applier is None:
            return _Outcome(
                SUCCEEDED,
                f"{summary}; rendered only (GUARA_RUNTIME=render).",
                None,
                resolution.digest,
                manifests,
            )
        removed = _Outcome(
            FAILED, _REMOVED_MESSAGE.format(what=""), CREDENTIALS_REMOVED, resolution.digest, manifests
        )
        if not await _credentials_unchanged(ctx, start):
            return removed
        try:
            await self.applier.apply(rendered.objects, absent=rendered.absent)
        except ApplyFailed as exc:
            return _Outcome(
                FAILED, f"{summary}; applying failed: {exc}.", APPLY_FAILED, resolution.digest, manifests
            )
        if not await _credentials_unchanged(ctx, start):
            # Removed while this deploy applied them: take back the pull Secret it just wrote, so the
            # removal wins whichever finished first (the removal deletes it too).
            ref = pull_secret_ref(start.project_id, start.service_name)
            try:
                await self.applier.apply([], absent=[ref])
            except ApplyFailed as exc:
                return _Outcome(
                    FAILED, f"{removed.message} Deleting its pull Secret failed: {exc}.", APPLY_FAILED
                )
            what = " and deleted the pull Secret it had applied"
            return _Outcome(
                FAILED, _REMOVED_MESSAGE.format(what=what), CREDENTIALS_REMOVED, resolution.digest, manifests
            )
        return _Outcome(
            SUCCEEDED,
            f"{summary}; applied to Kubernetes namespace {rendered.names.namespace} (server-side apply).",
            None,
            resolution.digest,
            manifests,
        )


async def sweep_abandoned(ctx: AppContext, *, lease_s: float = LEASE_S) -> int:
    """End the deployments whose process is gone as ``interrupted``: their lease ran out, or their owner
    was a process of this host that no longer exists. Returns how many."""

    def work(session: Session) -> int:
        cutoff = utcnow() - timedelta(seconds=lease_s)
        rows = session.scalars(select(Deployment).where(Deployment.status.in_(ACTIVE))).all()
        ended = 0
        for row in rows:
            alive_at = row.heartbeat_at or row.updated_at
            if alive_at >= cutoff and not owner_gone(row.owner):
                continue
            creator = session.get(User, row.created_by) if row.created_by else None
            principal = Principal(creator.id, creator.email) if creator else SYSTEM
            _finish(session, row.id, principal, _INTERRUPTED)
            ended += 1
        return ended

    return await ctx.db.run(work)


async def _finish_shielded(
    ctx: AppContext, deployment_id: uuid.UUID, principal: Principal, outcome: _Outcome
) -> None:
    """Record the end even while being cancelled (bounded: a stuck database must not block shutdown)."""
    with anyio.CancelScope(shield=True) as scope:
        scope.deadline = anyio.current_time() + _FINAL_WRITE_BUDGET_S
        try:
            await ctx.db.run(lambda s: _finish(s, deployment_id, principal, outcome))
        except Exception:
            logger.exception("could not record the end of deployment %s", deployment_id)


def _summary(image: ResolvedImage, rendered: RenderedWorkload) -> str:
    source = f" from the multi-platform index {image.index_digest}" if image.index_digest else ""
    how = "with the stored registry credentials" if image.with_credentials else "anonymously"
    return (
        f"Pinned {image.pinned} ({image.platform}{source}), pulled {how} in {image.elapsed_ms} ms; "
        f"{len(rendered.objects)} Kubernetes objects for namespace {rendered.names.namespace}"
    )


def _hint(code: PreflightCode, with_credentials: bool) -> str:
    if code is PreflightCode.INVALID_URL and with_credentials:
        return f" Check the service's registry credentials in {SETTINGS_HINT}."
    if code not in (PreflightCode.AUTH_FAILED, PreflightCode.MANIFEST_NOT_FOUND):
        return ""
    if not with_credentials:
        return (
            " This service has no registry credentials: if the image is private, add the credentials "
            f"back in the service's {SETTINGS_HINT}, then deploy again."
        )
    if code is PreflightCode.AUTH_FAILED:
        return f" Check the service's registry credentials in {SETTINGS_HINT}: they may have been revoked."
    return f" Check the image reference, and that the credentials in {SETTINGS_HINT} can read it."


def _pull_credentials(login: RegistryLogin | None) -> PullCredentials | None:
    if login is None:
        return None
    try:
        location = parse_registry(login.registry, allow_http=True)
    except InvalidRegistry as exc:  # resolution already used it, so this cannot happen
        raise DeployError("the stored registry is invalid") from exc
    return PullCredentials(location, login.username, login.password)


# --- database steps (each runs in a worker thread, in its own transaction) ------------------------------


def _renew(session: Session, owner: str) -> None:
    session.execute(
        update(Deployment)
        .where(Deployment.owner == owner, Deployment.status.in_(ACTIVE))
        .values(heartbeat_at=utcnow())
    )


async def _credentials_unchanged(ctx: AppContext, start: _Start) -> bool:
    if start.fingerprint is None:
        return True
    current = await ctx.db.run(lambda session: credentials.fingerprint(session, service_id=start.service_id))
    return current == start.fingerprint


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
        login=login,
        fingerprint=credentials.fingerprint(session, service_id=service.id),
        unreadable=unreadable,
    )


def _finish(session: Session, deployment_id: uuid.UUID, principal: Principal, outcome: _Outcome) -> None:
    """Write the final status and its ``service.deploy`` audit entry in one transaction."""
    row = session.get(Deployment, deployment_id)
    service = session.get(Service, row.service_id) if row is not None else None
    if row is None or service is None or row.status not in ACTIVE:
        return
    row.status = outcome.status
    row.code = outcome.code
    row.message = outcome.message[:MAX_MESSAGE]
    row.digest = outcome.digest
    row.manifests = outcome.manifests
    row.updated_at = utcnow()
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
