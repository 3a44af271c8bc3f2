"""The running platform: settings plus the long-lived resources every use case needs."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio.to_thread
from sqlalchemy.orm import Session

from guara.config import Settings
from guara.ratelimit import DEPLOYS_PER_MINUTE, PROBES_PER_MINUTE, SIGN_INS_PER_MINUTE, PreflightLimiter
from guara.secrets import MasterKeyring, ensure_key_file, load_keyring
from guara.store import Database

log = logging.getLogger(__name__)
T = TypeVar("T")


class Platform:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        keyring: MasterKeyring,
        limiter: PreflightLimiter,
        probe_limiter: PreflightLimiter,
        deploy_limiter: PreflightLimiter,
        sign_in_limiter: PreflightLimiter,
    ) -> None:
        self.settings = settings
        self.db = db
        self.limiter = limiter
        self.probe_limiter = probe_limiter
        self.deploy_limiter = deploy_limiter
        self.sign_in_limiter = sign_in_limiter
        self._keyring = keyring
        # `guara keys rotate` appends to the key file from another process: notice it and reload.
        self._key_file: Path | None = (
            None if settings.master_key is not None else settings.effective_master_key_file
        )
        self._key_stamp = _stamp(self._key_file)

    @classmethod
    def from_settings(cls, settings: Settings, *, announce: bool = False) -> Platform:
        keyring = load_master_keyring(settings, announce=announce)
        if settings.ssrf_allow and announce:
            log.warning(
                "GUARA_SSRF_ALLOW=%s: the network guard lets preflights and deploys reach these ranges",
                settings.ssrf_allow,
            )
        return cls(
            settings=settings,
            db=Database(settings.effective_database_url),
            keyring=keyring,
            limiter=PreflightLimiter(settings.redis_url),
            probe_limiter=PreflightLimiter(
                settings.redis_url, per_minute=PROBES_PER_MINUTE, namespace="probe"
            ),
            deploy_limiter=PreflightLimiter(
                settings.redis_url, per_minute=DEPLOYS_PER_MINUTE, namespace="deploy"
            ),
            sign_in_limiter=PreflightLimiter(
                settings.redis_url, per_minute=SIGN_INS_PER_MINUTE, namespace="sign-in"
            ),
        )

    async def in_session(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a worker thread, in one unit of work: the event loop never waits on SQL."""

        def unit() -> T:
            with self.db.session() as session:
                return work(session)

        return await anyio.to_thread.run_sync(unit)

    @property
    def keyring(self) -> MasterKeyring:
        stamp = _stamp(self._key_file)
        if stamp != self._key_stamp and self._key_file is not None:
            self._keyring = load_keyring(key_b64=None, key_file=self._key_file)
            self._key_stamp = stamp
            log.info("master key file changed; current key version is now %d", self._keyring.current_version)
        return self._keyring


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def load_master_keyring(settings: Settings, *, announce: bool = False) -> MasterKeyring:
    if settings.master_key is not None or settings.master_key_file is not None:
        return load_keyring(key_b64=settings.master_key, key_file=settings.master_key_file)
    path = settings.effective_master_key_file
    keyring, created = ensure_key_file(path)
    if announce:
        state = "generated" if created else "using"
        log.warning(
            "DEVELOPMENT DEFAULT: %s master key file %s (mode 0600) and database %s. "
            "For production set GUARA_MASTER_KEY_FILE (or GUARA_MASTER_KEY) and GUARA_DATABASE_URL.",
            state,
            path,
            settings.effective_database_url,
        )
    return keyring
