"""Master-key rotation: append a key version, then re-seal every stored secret under it.

Re-sealing runs in batches, one transaction each, so an interrupted rotation loses nothing: every secret
opens under the version that sealed it, and running ``guara keys rotate`` again resumes (it only adds a
new version when no secret is still sealed under an older one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, update

from guara.core.credentials import PASSWORD_FIELD
from guara.core.platform import Platform
from guara.secrets import ProjectKeys, append_key_version, reseal
from guara.store.models import RegistryCredential

BATCH_SIZE = 200


class RotationImpossible(Exception):
    """Rotation cannot run with this configuration; the message says what to set instead."""


@dataclass(frozen=True)
class RotationReport:
    version: int
    resealed: int
    resumed: bool


def status(platform: Platform) -> dict[int, int]:
    with platform.db.session() as session:
        rows = session.execute(
            select(RegistryCredential.key_version, func.count()).group_by(RegistryCredential.key_version)
        ).all()
    return {int(version): int(count) for version, count in rows}


def pending(platform: Platform) -> int:
    with platform.db.session() as session:
        return int(
            session.scalar(
                select(func.count()).where(RegistryCredential.key_version < platform.keyring.current_version)
            )
            or 0
        )


def rotate(
    platform: Platform, *, batch_size: int = BATCH_SIZE, on_progress: Callable[[int], None] | None = None
) -> RotationReport:
    settings = platform.settings
    resumed = pending(platform) > 0
    if settings.master_key is not None and not resumed:
        # guara cannot edit the environment: the operator adds the version, then rotate re-seals.
        version = platform.keyring.current_version
        raise RotationImpossible(
            f"the master key comes from GUARA_MASTER_KEY and every secret is already sealed with its newest "
            f"version (v{version}). Add a new key to it as 'v1:<old>,...,v{version + 1}:<new key>' "
            "(openssl rand -base64 32), restart guara, then run `guara keys rotate` to re-seal; or move "
            "the keys into a key file (GUARA_MASTER_KEY_FILE) and let guara add versions itself."
        )
    if not resumed:
        append_key_version(settings.effective_master_key_file)
    resealed = reseal_pending(platform, batch_size=batch_size, on_progress=on_progress)
    return RotationReport(platform.keyring.current_version, resealed, resumed)


def reseal_pending(
    platform: Platform, *, batch_size: int = BATCH_SIZE, on_progress: Callable[[int], None] | None = None
) -> int:
    target = platform.keyring.current_version
    keys = ProjectKeys(platform.keyring)
    done = 0
    while True:
        with platform.db.session() as session:
            batch = session.execute(
                select(
                    RegistryCredential.service_id,
                    RegistryCredential.project_id,
                    RegistryCredential.password_sealed,
                )
                .where(RegistryCredential.key_version < target)
                .order_by(RegistryCredential.service_id)
                .limit(batch_size)
            ).all()
            if not batch:
                return done
            for service_id, project_id, envelope in batch:
                sealed = reseal(
                    keys,
                    envelope,
                    project_id=str(project_id),
                    service_id=str(service_id),
                    field=PASSWORD_FIELD,
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
        done += len(batch)
        if on_progress is not None:
            on_progress(done)
