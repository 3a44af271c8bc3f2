"""Settings: the only module that reads the environment (prefix ``GUARA_``).

Validated once at start-up; everything else receives a ``Settings`` object.
"""

from __future__ import annotations

import logging
from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from guara import PREFLIGHT_TIMEOUT_S

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("guara", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUARA_", extra="ignore", frozen=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    master_key: SecretStr | None = None
    master_key_file: Path | None = None
    redis_url: str | None = None
    preflight_timeout_s: float = Field(default=PREFLIGHT_TIMEOUT_S, gt=0, le=60)
    extra_ca_file: Path | None = None
    # A comma-separated string: pydantic-settings would otherwise expect JSON for a list.
    ssrf_allow: str = ""
    allow_http_registries: bool = False
    runtime: str = "render"
    # With GUARA_RUNTIME=kubernetes outside a pod: the kubeconfig to use (default: the client's own).
    kubeconfig: Path | None = None
    log_level: str = "info"
    session_max_age_s: int = 14 * 24 * 3600
    # Behind a TLS-terminating proxy guara sees plain http: set true so cookies are still Secure.
    # Unset: Secure exactly when the request itself came over https.
    cookie_secure: bool | None = None

    @field_validator("ssrf_allow")
    @classmethod
    def _valid_cidrs(cls, value: str) -> str:
        from guara.netguard import parse_allow_list

        parse_allow_list(value)  # one rule for what an exemption may be: the guard's
        return value

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        if value not in ("render", "kubernetes"):
            raise ValueError("GUARA_RUNTIME must be 'render' or 'kubernetes'")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in ("critical", "error", "warning", "info", "debug"):
            raise ValueError("GUARA_LOG_LEVEL must be one of critical, error, warning, info, debug")
        return value.lower()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'guara.db'}"

    @property
    def effective_master_key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

    @property
    def uses_dev_defaults(self) -> bool:
        return self.master_key is None and self.master_key_file is None


def redact_url(url: str) -> str:
    """A database or Redis URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # any unparsable URL: show its scheme only
        return url.split(":", 1)[0] + "://…"
