"""Fresh pull Secrets for cloud registry credentials on Kubernetes.

A pull Secret made from an exchanged cloud token stops working when the token expires: an ECR
password after 12 hours, a Google access token after one. The cluster needs it at every pull (a new
pod, a rescheduled or scaled one), long after the deploy. So the Kubernetes runtime's reconcile round
(every 30 s) re-applies the pull Secret of each deployed service with cloud credentials from a token
exchanged just then, once half of the token's life has passed; a failed refresh is retried a minute
later and logged (without any secret). The engine runtime needs none of this: each pull exchanges.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from guara.core import credentials
from guara.core.errors import CredentialsUnreadable
from guara.core.preflights import RegistryLogin
from guara.deploy import ApplyFailed, ManifestApplier, PullCredentials, pull_secret_ref, render_pull_secret
from guara.registry import Deadline, RegistryClientError, cloud_login, parse_registry
from guara.secrets import secret_scope
from guara.store.models import Deployment, RegistryCredential, Service

if TYPE_CHECKING:
    from guara.context import AppContext

logger = logging.getLogger("guara.deploy.refresh")

# Half of each token's life: ECR passwords last 12 h, Google access tokens 1 h.
REFRESH_AFTER_S = {"aws_ecr": 6 * 3600.0, "google": 30 * 60.0}
FIRST_REFRESH_AFTER_S = min(REFRESH_AFTER_S.values())
RETRY_AFTER_S = 60.0
_DEPLOYED = "succeeded"


@dataclass(frozen=True)
class _Deployed:
    service_id: uuid.UUID
    project_id: uuid.UUID
    service_name: str
    kind: str


def _deployed_cloud_services(session: Session) -> list[_Deployed]:
    """Services with cloud credentials that a deploy put on the cluster."""
    deployed = exists().where(Deployment.service_id == Service.id, Deployment.status == _DEPLOYED)
    rows = session.execute(
        select(Service.id, Service.project_id, Service.name, RegistryCredential.kind)
        .join(RegistryCredential, RegistryCredential.service_id == Service.id)
        .where(RegistryCredential.kind.in_(tuple(REFRESH_AFTER_S)), deployed)
    ).all()
    return [_Deployed(*row) for row in rows]


class PullSecretRefresher:
    """Remembers when each service's pull Secret was last written; ``refresh_due`` renews the due ones."""

    def __init__(self, applier: ManifestApplier, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.applier = applier
        self.clock = clock
        self._due_at: dict[uuid.UUID, float] = {}

    def written(self, service_id: uuid.UUID) -> None:
        """A deploy just wrote the Secret from a fresh token."""
        self._due_at[service_id] = self.clock() + FIRST_REFRESH_AFTER_S

    async def refresh_due(self, ctx: AppContext) -> int:
        """Re-apply every due pull Secret from a freshly exchanged token; how many were renewed. After a
        restart every one is due once (nothing says when it was written)."""
        deployed = await ctx.db.run(_deployed_cloud_services)
        known = {service.service_id for service in deployed}
        for service_id in set(self._due_at) - known:  # credentials removed, service deleted
            del self._due_at[service_id]
        renewed = 0
        for service in deployed:
            if self._due_at.get(service.service_id, 0.0) > self.clock():
                continue
            with secret_scope():  # this refresh's secrets are scrubbed from its log lines, then forgotten
                ok = await self._refresh(ctx, service)
            self._due_at[service.service_id] = self.clock() + (
                REFRESH_AFTER_S[service.kind] if ok else RETRY_AFTER_S
            )
            renewed += ok
        if renewed:
            logger.info("refreshed %d pull Secrets of cloud registry credentials", renewed)
        return renewed

    async def _refresh(self, ctx: AppContext, service: _Deployed) -> bool:
        def open_stored(session: Session) -> tuple[RegistryLogin | None, str | None]:
            login = credentials.open_stored(ctx, session, service_id=service.service_id)
            return login, credentials.fingerprint(session, service_id=service.service_id)

        try:
            login, fingerprint = await ctx.db.run(open_stored)
        except CredentialsUnreadable as exc:
            logger.warning("pull Secret of service %s not refreshed: %s", service.service_id, exc.message)
            return False
        if login is None or login.cloud_key is None:
            return False
        location = parse_registry(login.registry, allow_http=True)
        deadline = Deadline(ctx.registry.timeout)
        try:
            with deadline.scope():
                exchanged = await cloud_login(
                    login.cloud_key, registry_host=location.host, options=ctx.registry, deadline=deadline
                )
        except RegistryClientError as exc:
            logger.warning("pull Secret of service %s not refreshed: %s", service.service_id, exc)
            return False
        secret = render_pull_secret(
            project_id=service.project_id,
            service_id=service.service_id,
            service_name=service.service_name,
            credentials=PullCredentials(location, exchanged.username, exchanged.password),
        )
        try:
            if not await self._unchanged(ctx, service, fingerprint):
                return False  # saved or removed meanwhile: their own deploy or removal decides
            await self.applier.apply([secret])
            if not await self._unchanged(ctx, service, fingerprint):
                # Removed while this refresh applied: the removal must win, as it does for deploys.
                await self.applier.apply(
                    [], absent=[pull_secret_ref(service.project_id, service.service_name)]
                )
                return False
        except ApplyFailed as exc:
            logger.warning("pull Secret of service %s not refreshed: %s", service.service_id, exc)
            return False
        return True

    @staticmethod
    async def _unchanged(ctx: AppContext, service: _Deployed, fingerprint: str | None) -> bool:
        current = await ctx.db.run(
            lambda session: credentials.fingerprint(session, service_id=service.service_id)
        )
        return current == fingerprint
