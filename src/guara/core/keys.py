"""Master-key rotation: append a key version, then re-seal every stored secret under it.

Re-sealing runs in batches, one transaction each, so an interrupted rotation loses nothing: every secret
opens under the version that sealed it, and running ``guara keys rotate`` again resumes (it only adds a
new version when no secret is still sealed under an older one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from guara.core.credentials import secret_field
from guara.core.webhooks import SECRET_FIELD, SECRET_OWNER
from guara.secrets import ProjectKeys, append_key_version, reseal
from guara.store.models import ProjectWebhook, RegistryCredential

if TYPE_CHECKING:
    from guara.context import AppContext

BATCH_SIZE = 200


class RotationImpossible(Exception):
    """Rotation cannot run with this configuration; the message says what to set instead."""


@dataclass(frozen=True)
class RotationReport:
    version: int
    resealed: int
    resumed: bool


async def status(ctx: AppContext) -> dict[int, int]:
    """How many stored secrets each master-key version seals."""

    def work(session: Session) -> dict[int, int]:
        counts: dict[int, int] = {}
        for column in (RegistryCredential.key_version, ProjectWebhook.key_version):
            for version, count in session.execute(select(column, func.count()).group_by(column)).all():
                counts[int(version)] = counts.get(int(version), 0) + int(count)
        return counts

    return await ctx.db.run(work)


async def pending(ctx: AppContext) -> int:
    """How many stored secrets an older master-key version still seals."""
    current = ctx.keyring.current_version

    def work(session: Session) -> int:
        passwords = session.scalar(select(func.count()).where(RegistryCredential.key_version < current))
        secrets = session.scalar(select(func.count()).where(ProjectWebhook.key_version < current))
        return int(passwords or 0) + int(secrets or 0)

    return await ctx.db.run(work)


async def rotate(
    ctx: AppContext, *, batch_size: int = BATCH_SIZE, on_progress: Callable[[int], None] | None = None
) -> RotationReport:
    settings = ctx.settings
    resumed = await pending(ctx) > 0
    if settings.master_key is not None and not resumed:
        # guara cannot edit the environment: the operator adds the version, then rotate re-seals.
        version = ctx.keyring.current_version
        raise RotationImpossible(
            f"the master key comes from GUARA_MASTER_KEY and every secret is already sealed with its newest "
            f"version (v{version}). Add a new key to it as 'v1:<old>,...,v{version + 1}:<new key>' "
            "(openssl rand -base64 32), restart guara, then run `guara keys rotate` to re-seal; or move "
            "the keys into a key file (GUARA_MASTER_KEY_FILE) and let guara add versions itself."
        )
    if not resumed:
        append_key_version(settings.effective_master_key_file)
    resealed = await reseal_pending(ctx, batch_size=batch_size, on_progress=on_progress)
    return RotationReport(ctx.keyring.current_version, resealed, resumed)


async def reseal_pending(
    ctx: AppContext, *, batch_size: int = BATCH_SIZE, on_progress: Callable[[int], None] | None = None
) -> int:
    """Re-seal, in batches of one transaction each, every secret an older key version seals."""
    target = ctx.keyring.current_version
    keys = ProjectKeys(ctx.keyring)

    def batch_work(session: Session) -> int:
        batch = session.execute(
            select(
                RegistryCredential.service_id,
                RegistryCredential.project_id,
                RegistryCredential.password_sealed,
                RegistryCredential.kind,
            )
            .where(RegistryCredential.key_version < target)
            .order_by(RegistryCredential.service_id)
            .limit(batch_size)
        ).all()
        for service_id, project_id, envelope, kind in batch:
            sealed = reseal(
                keys,
                envelope,
                project_id=str(project_id),
                service_id=str(service_id),
                field=secret_field(kind),
                to_version=target,
            )
            # Conditional: a save that replaced the secret meanwhile wins.
            session.execute(
                update(RegistryCredential)
                .where(
                    RegistryCredential.service_id == service_id,
                    RegistryCredential.password_sealed == envelope,
                )
                .values(password_sealed=sealed, key_version=target)
            )
        return len(batch) + _reseal_webhook_secrets(session, keys, target, batch_size)

    done = 0
    while count := await ctx.db.run(batch_work):
        done += count
        if on_progress is not None:
            on_progress(done)
    return done


def _reseal_webhook_secrets(session: Session, keys: ProjectKeys, target: int, batch_size: int) -> int:
    """One batch of project webhook signing secrets, re-sealed like registry passwords."""
    batch = session.execute(
        select(ProjectWebhook.project_id, ProjectWebhook.secret_sealed)
        .where(ProjectWebhook.key_version < target)
        .order_by(ProjectWebhook.project_id)
        .limit(batch_size)
    ).all()
    for project_id, envelope in batch:
        sealed = reseal(
            keys,
            envelope,
            project_id=str(project_id),
            service_id=SECRET_OWNER,
            field=SECRET_FIELD,
            to_version=target,
        )
        session.execute(
            update(ProjectWebhook)
            .where(ProjectWebhook.project_id == project_id, ProjectWebhook.secret_sealed == envelope)
            .values(secret_sealed=sealed, key_version=target)
        )
    return len(batch)
