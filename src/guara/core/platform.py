"""The running platform: settings plus the long-lived resources every use case needs."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from guara.config import Settings
from guara.ratelimit import PreflightLimiter
from guara.secrets import MasterKeyring, ensure_key_file, load_keyring
from guara.store import Database

log = logging.getLogger(__name__)


@dataclass
class Platform:
    settings: Settings
    db: Database
    keyring: MasterKeyring
    limiter: PreflightLimiter

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
        )


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
