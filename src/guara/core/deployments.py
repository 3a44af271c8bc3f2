"""Deployments of a service: start one (it runs in the background), list them, read one.

A deployment goes ``pending`` → ``resolving`` → ``succeeded`` | ``failed``:

1. ``start_deployment`` authorises the caller, records a ``pending`` row (image and platform copied
   from the service) and hands it to the platform's ``DeploymentRunner``; the caller gets the row at
   once (the API answers 202).
2. The runner's task opens the service's stored credentials (if any) only for this deploy, resolves
   the image through the network guard under one deadline (``GUARA_PREFLIGHT_TIMEOUT_S``), renders
   the Kubernetes objects and, with ``GUARA_RUNTIME=kubernetes``, applies them.
3. The final status, the pinned digest, the redacted manifests and the ``service.deploy`` audit entry
   are written in one transaction.

``code`` of a failed deployment: one of the six preflight codes when the image could not be resolved;
else ``apply_failed`` (the cluster refused or was unreachable), ``interrupted`` (guara stopped first)
or ``internal_error``. Deployments of one service run one at a time, in the order they were started.
No secret is ever written to the row, its message, a log line or the audit entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
import anyio.to_thread
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from guara.core import audit, credentials, services, validation
from guara.core.accounts import Principal
from guara.core.credentials import open_stored_credentials
from guara.core.errors import Conflict, CredentialsUnreadable, InvalidInput, NotFound, RateLimited
from guara.core.platform import Platform
from guara.deploy import (
    ApplyFailed,
    DeployError,
    InvalidPlatform,
    KubernetesApplier,
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
from guara.store.models import Deployment, RegistryCredential, Service, User, utcnow

logger = logging.getLogger("guara.deploy")

PENDING = "pending"
RESOLVING = "resolving"
SUCCEEDED = "succeeded"
FAILED = "failed"
ACTIVE = frozenset({PENDING, RESOLVING})

APPLY_FAILED = "apply_failed"
INTERRUPTED = "interrupted"
INTERNAL_ERROR = "internal_error"

DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100
SHUTDOWN_GRACE_S = 5.0
ABANDONED_AFTER_S = 600.0
MAX_MESSAGE = 2000  # a deployment's message is for people; registries can say a lot
_FINAL_WRITE_BUDGET_S = 10.0


SETTINGS_HINT = "Settings → Private Registry"


# --- reading --------------------------------------------------------------------------------------


def list_deployments(
    session: Session, *, principal: Principal, service_id: uuid.UUID, limit: int = DEFAULT_LIST_LIMIT
) -> list[Deployment]:
    """The service's deployments, newest first. NotFound for a service the caller cannot see."""
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}", field="limit")
    service = services.get_service(session, principal=principal, service_id=service_id)
    return list(
        session.scalars(
            select(Deployment)
            .where(Deployment.service_id == service.id)
            .order_by(Deployment.created_at.desc())
            .limit(limit)
        )
    )


def get_deployment(
    session: Session, *, principal: Principal, service_id: uuid.UUID, deployment_id: uuid.UUID
) -> Deployment:
    """One deployment of a service the caller can see; NotFound otherwise (also for another service's)."""
    service = services.get_service(session, principal=principal, service_id=service_id)
    row = session.scalar(
        select(Deployment).where(Deployment.id == deployment_id, Deployment.service_id == service.id)
    )
    if row is None:
        raise NotFound("deployment not found")
    return row


def fail_abandoned(session: Session, *, older_than_s: float = ABANDONED_AFTER_S) -> int:
    """End deployments a stopped process left ``pending``/``resolving`` (at start-up; returns how many).

    Only rows untouched for ``older_than_s``: another process sharing the database may still be
    running younger ones (a deployment lasts at most the preflight deadline plus an apply).
    """
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    rows = session.scalars(
        select(Deployment).where(Deployment.status.in_(ACTIVE), Deployment.updated_at < cutoff)
    ).all()
    for row in rows:
        creator = session.get(User, row.created_by) if row.created_by else None
        principal = Principal(creator.id, creator.email) if creator else Principal(uuid.UUID(int=0), "guara")
        _finish(session, row.id, principal, _INTERRUPTED)
    return len(rows)


# --- starting -------------------------------------------------------------------------------------


async def start_deployment(platform: Platform, principal: Principal, *, service_id: uuid.UUID) -> Deployment:
    """Record a pending deployment of the service and start it in the background; returns at once."""
    runner = runner_for(platform)
    if runner.closing:
        raise Conflict("guara is shutting down; deploy again in a moment", code="shutting_down")

    def create(session: Session) -> Deployment:
        service = services.get_service(session, principal=principal, service_id=service_id)
        running = session.scalar(
            select(Deployment.id).where(Deployment.service_id == service.id, Deployment.status.in_(ACTIVE))
        )
        if running is not None:
            # One at a time per service: queues stay bounded, and a deploy always starts from fresh values.
            raise Conflict(
                "a deployment of this service is already running; wait for it to finish",
                code="deploy_in_progress",
            )
        validation.image_reference(service.image)
        try:
            parse_platform(service.platform)
        except InvalidPlatform as exc:
            raise InvalidInput(str(exc), code="invalid_platform", field="platform") from None
        with_credentials = session.get(RegistryCredential, service.id) is not None
        row = Deployment(
            service_id=service.id,
            project_id=service.project_id,
            status=PENDING,
            image=service.image,
            platform=service.platform,
            with_credentials=with_credentials,
            message="Queued: the image will be resolved "
            + ("with the stored registry credentials." if with_credentials else "anonymously."),
            created_by=principal.user_id,
        )
        session.add(row)
        session.flush()
        return row

    def unverified(session: Session) -> bool:
        service = services.get_service(session, principal=principal, service_id=service_id)
        stored = session.get(RegistryCredential, service.id)
        return stored is not None and stored.verification != "passed"

    if await platform.in_session(unverified):
        # Credentials saved without verifying are first tried here: that is a preflight, and counts as one.
        await credentials.count_preflight(platform, principal)
    retry_after = await platform.deploy_limiter.hit_async(str(principal.user_id))
    if retry_after is not None:
        # Deploys reach registries too: without a bound, save-without-verifying plus deploy would be
        # an unlimited credential oracle around the Test Connection limit.
        raise RateLimited(f"Too many deploys; try again in {retry_after} seconds.", retry_after=retry_after)
    row = await platform.in_session(create)
    runner.spawn(platform, row.id, principal)
    return row


# --- removing credentials -------------------------------------------------------------------------


@dataclass(frozen=True)
class Withdrawal:
    removed: bool
    message: str


ANONYMOUS_NOTE = (
    "The service now pulls its image anonymously. If the image is private, its next deploy will fail "
    "until credentials are added back."
)


async def withdraw_credentials(
    platform: Platform, principal: Principal, *, service_id: uuid.UUID
) -> Withdrawal:
    """Remove a service's registry credentials and, with GUARA_RUNTIME=kubernetes, its pull Secret in
    the cluster too: removed credentials must not live on there until some later deploy."""

    def remove(session: Session) -> tuple[bool, Service]:
        removed = credentials.remove_credentials(session, principal=principal, service_id=service_id)
        return removed, services.get_service(session, principal=principal, service_id=service_id)

    removed, service = await platform.in_session(remove)
    if not removed:
        return Withdrawal(False, "The service had no registry credentials.")
    applier = runner_for(platform).applier
    if applier is None:
        return Withdrawal(True, ANONYMOUS_NOTE)
    try:
        await applier.apply([], absent=[pull_secret_ref(service.project_id, service.name)])
    except ApplyFailed as exc:
        logger.warning("could not delete the pull Secret of service %s: %s", service.id, exc)
        return Withdrawal(
            True,
            f"{ANONYMOUS_NOTE} The pull Secret could not be deleted from the cluster yet ({exc}); "
            "the next deploy removes it.",
        )
    return Withdrawal(True, f"{ANONYMOUS_NOTE} Its pull Secret was deleted from the cluster.")


# --- the runner -----------------------------------------------------------------------------------


_runners: weakref.WeakKeyDictionary[Platform, DeploymentRunner] = weakref.WeakKeyDictionary()


def runner_for(platform: Platform) -> DeploymentRunner:
    """The platform's runner (made on first use; applies to Kubernetes when GUARA_RUNTIME=kubernetes)."""
    runner = _runners.get(platform)
    if runner is None:
        applier = (
            KubernetesApplier.from_environment(kubeconfig=platform.settings.kubeconfig)
            if platform.settings.runtime == "kubernetes"
            else None
        )
        runner = _runners[platform] = DeploymentRunner(applier=applier)
    return runner


def configure_runner(
    platform: Platform,
    *,
    applier: ManifestApplier | None = None,
    shutdown_grace_s: float = SHUTDOWN_GRACE_S,
) -> DeploymentRunner:
    """Replace the platform's runner (an idle one): another applier, another shutdown grace."""
    current = _runners.get(platform)
    if current is not None and current.busy:
        raise RuntimeError("the deployment runner is busy")
    runner = _runners[platform] = DeploymentRunner(applier=applier, shutdown_grace_s=shutdown_grace_s)
    return runner


async def shutdown(platform: Platform) -> None:
    """Wait for running deployments (up to the grace period), cancel the rest; they end ``interrupted``."""
    runner = _runners.get(platform)
    if runner is not None:
        await runner.aclose()


@dataclass(frozen=True)
class _Start:
    """What a deployment needs once it leaves ``pending``. ``credentials`` is (registry, username,
    password) for the duration of the deploy only."""

    image: str
    platform: str
    project_id: uuid.UUID
    service_id: uuid.UUID
    service_name: str
    credentials: tuple[str, str, SecretStr] | None
    unreadable: str | None = None


@dataclass(frozen=True)
class _Outcome:
    status: str
    message: str
    code: str | None = None
    digest: str | None = None
    manifests: list[dict[str, Any]] | None = None


class DeploymentRunner:
    """Owns the background tasks of one platform: tracked, one at a time per service, and awaited or
    cancelled at shutdown (``aclose``), so no task outlives the application."""

    def __init__(
        self, *, applier: ManifestApplier | None, shutdown_grace_s: float = SHUTDOWN_GRACE_S
    ) -> None:
        self.applier = applier
        self.shutdown_grace_s = shutdown_grace_s
        self.closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._turns: dict[uuid.UUID, tuple[asyncio.Lock, int]] = {}

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def spawn(self, platform: Platform, deployment_id: uuid.UUID, principal: Principal) -> None:
        task = asyncio.get_running_loop().create_task(
            self._run(platform, deployment_id, principal), name=f"guara-deploy-{deployment_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Wait until every deployment started on this event loop has finished."""
        while tasks := self._tasks_of_this_loop():
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        self.closing = True
        try:
            tasks = self._tasks_of_this_loop()
            if tasks:
                _done, pending = await asyncio.wait(tasks, timeout=self.shutdown_grace_s)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
        finally:
            # The platform may serve again (a new app on the same platform, as tests do).
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

    async def _run(self, platform: Platform, deployment_id: uuid.UUID, principal: Principal) -> None:
        # Its own scope: the password opened for this deploy is scrubbed from its log lines only.
        with secret_scope():
            try:
                service_id = await platform.in_session(lambda s: _service_of(s, deployment_id))
                if service_id is None:
                    return
                async with self._turn(service_id):
                    outcome = await self._deploy(platform, deployment_id)
                    if outcome is not None:
                        await platform.in_session(lambda s: _finish(s, deployment_id, principal, outcome))
            except asyncio.CancelledError:
                await _finish_shielded(platform, deployment_id, principal, _INTERRUPTED)
                raise
            except Exception:
                logger.exception("deployment %s failed unexpectedly", deployment_id)
                crashed = _Outcome(
                    FAILED, "guara failed while deploying (see the server log); deploy again.", INTERNAL_ERROR
                )
                await _finish_shielded(platform, deployment_id, principal, crashed)

    async def _deploy(self, platform: Platform, deployment_id: uuid.UUID) -> _Outcome | None:
        start = await platform.in_session(lambda s: _begin(platform, s, deployment_id))
        if start is None:
            return None  # the service (and its deployments) was deleted meanwhile
        if start.unreadable is not None:
            return _Outcome(FAILED, start.unreadable, PreflightCode.AUTH_FAILED.value)
        settings = platform.settings
        registry, username, password = start.credentials or (None, None, None)
        resolution = await resolve_image(
            start.image,
            platform=parse_platform(start.platform),
            registry=registry,
            username=username,
            password=password,
            ca_file=settings.extra_ca_file,
            ssrf_allow=settings.ssrf_allow,
            timeout=settings.preflight_timeout_s,
            allow_http=settings.allow_http_registries,
        )
        if not isinstance(resolution, ResolvedImage):
            message = resolution.message.rstrip(".") + "."
            if not resolution.unusable:
                message += _hint(resolution.code, start.credentials is not None)
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
                credentials=_pull_credentials(start.credentials),
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
        try:
            await self.applier.apply(rendered.objects, absent=rendered.absent)
        except ApplyFailed as exc:
            return _Outcome(
                FAILED, f"{summary}; applying failed: {exc}.", APPLY_FAILED, resolution.digest, manifests
            )
        return _Outcome(
            SUCCEEDED,
            f"{summary}; applied to Kubernetes namespace {rendered.names.namespace} (server-side apply).",
            None,
            resolution.digest,
            manifests,
        )


_INTERRUPTED = _Outcome(FAILED, "guara stopped before this deployment finished; deploy again.", INTERRUPTED)


async def _finish_shielded(
    platform: Platform, deployment_id: uuid.UUID, principal: Principal, outcome: _Outcome
) -> None:
    """Record the end even while being cancelled (bounded: a stuck database must not block shutdown)."""
    with anyio.CancelScope(shield=True) as scope:
        scope.deadline = anyio.current_time() + _FINAL_WRITE_BUDGET_S
        try:
            await platform.in_session(lambda s: _finish(s, deployment_id, principal, outcome))
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


def _pull_credentials(credentials: tuple[str, str, SecretStr] | None) -> PullCredentials | None:
    if credentials is None:
        return None
    registry, username, password = credentials
    try:
        location = parse_registry(registry, allow_http=True)
    except InvalidRegistry as exc:  # resolution already used it, so this cannot happen
        raise DeployError("the stored registry is invalid") from exc
    return PullCredentials(location, username, password)


# --- database steps (each runs in a worker thread, in its own transaction) ------------------------------


def _service_of(session: Session, deployment_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalar(select(Deployment.service_id).where(Deployment.id == deployment_id))


def _begin(platform: Platform, session: Session, deployment_id: uuid.UUID) -> _Start | None:
    row = session.get(Deployment, deployment_id)
    service = session.get(Service, row.service_id) if row is not None else None
    if row is None or service is None or row.status != PENDING:
        return None
    unreadable: str | None = None
    try:
        credentials = open_stored_credentials(platform, session, service_id=service.id)
    except CredentialsUnreadable as exc:
        credentials, unreadable = None, f"{exc.message} ({SETTINGS_HINT})."
    row.status = RESOLVING
    row.with_credentials = credentials is not None or unreadable is not None
    how = "with the stored registry credentials" if row.with_credentials else "anonymously"
    row.message = f"Resolving {row.image} for {row.platform} {how}."
    row.updated_at = utcnow()
    return _Start(
        image=row.image,
        platform=row.platform,
        project_id=row.project_id,
        service_id=service.id,
        service_name=service.name,
        credentials=credentials,
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
    audit.record(
        session,
        principal=principal,
        service=service,
        action="service.deploy",
        details={
            "deployment_id": str(row.id),
            "status": row.status,
            "digest": row.digest,
            "with_credentials": row.with_credentials,
            "code": row.code,
            "image": row.image,
            "platform": row.platform,
        },
    )
    logger.info(
        "deployment %s of service %s %s code=%s digest=%s",
        row.id,
        service.id,
        row.status,
        row.code or "-",
        row.digest or "-",
    )
