"""Settings: the only module that reads the environment (prefix ``GUARA_``).

Validated once at start-up; everything else receives a ``Settings`` object.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from guara import PREFLIGHT_TIMEOUT_S

if TYPE_CHECKING:
    from guara.registry import RegistryOptions

log = logging.getLogger(__name__)


RUNTIMES = ("engine", "kubernetes", "render")


class ConfigurationError(Exception):
    """Settings that cannot work together; the message says what to set."""


ENGINE_SOCKETS = ("/run/podman/podman.sock", "/var/run/docker.sock")


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6 host]:port`` as (host, port); ValueError when it is neither."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    if not sep or not host or (":" in host and not address.startswith("[")) or not port.isdigit():
        raise ValueError("must be host:port, or [IPv6 address]:port")
    if not 1 <= int(port) <= 65535:
        raise ValueError("the port must be 1-65535")
    return host, int(port)


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("guara", appauthor=False))


def default_config_dir() -> Path:
    """Where ``guara login`` keeps the client's login: $XDG_CONFIG_HOME/guara (~/.config/guara)."""
    return Path(platformdirs.user_config_dir("guara", appauthor=False))


class ClientSettings(BaseSettings):
    """What the remote commands (``guara login``, ``projects``, ``services``, ``deploy``, ``logs``) read:
    ``GUARA_URL`` and ``GUARA_TOKEN`` win over the login stored in ``config_dir``."""

    model_config = SettingsConfigDict(env_prefix="GUARA_", extra="ignore", frozen=True)

    url: str | None = None
    token: SecretStr | None = None
    config_dir: Path = Field(default_factory=default_config_dir)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GUARA_", extra="ignore", frozen=True, populate_by_name=True)

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
    # engine | kubernetes | render. Unset: "engine" when an engine socket answers at start, else "render".
    runtime: str | None = None
    # With GUARA_RUNTIME=kubernetes outside a pod: the kubeconfig to use (default: the client's own).
    kubeconfig: Path | None = None
    # The Docker Engine API socket (Podman's or Docker's): GUARA_ENGINE_URL, else DOCKER_HOST, else the
    # first of ENGINE_SOCKETS that exists.
    engine_url: str | None = Field(
        default=None, validation_alias=AliasChoices("GUARA_ENGINE_URL", "DOCKER_HOST")
    )
    # Where containers' ports are published: loopback unless the operator puts a proxy elsewhere.
    engine_publish_ip: str = "127.0.0.1"
    # How long a new container may take to become ready before the deploy fails (start_failed).
    engine_start_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    # How often each service's stored credentials are re-checked in the background (seconds).
    health_interval: float = Field(default=21600.0, gt=0, le=30 * 24 * 3600)
    log_level: str = "info"
    # text (for people) or json (one object a line, for log pipelines); both redacted.
    log_format: str = "text"
    # host:port ([::1]:9100 for IPv6) to serve /metrics on, apart from the API; unset: GET /metrics
    # on the main address.
    metrics_addr: str | None = None
    session_max_age_s: int = 14 * 24 * 3600
    # Behind a TLS-terminating proxy guara sees plain http: set true so cookies are still Secure.
    # Unset: Secure exactly when the request itself came over https.
    cookie_secure: bool | None = None
    # The ECR (and STS) API endpoint for AWS keys; unset: AWS's regional endpoints. For AWS-compatible
    # endpoints and tests; still behind the network guard.
    aws_endpoint_url: str | None = None

    @field_validator("aws_endpoint_url")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("https://", "http://")) or "@" in value.split("/")[2]:
            raise ValueError("GUARA_AWS_ENDPOINT_URL must be an http(s) URL without credentials")
        return value.strip()

    @field_validator("ssrf_allow")
    @classmethod
    def _valid_cidrs(cls, value: str) -> str:
        from guara.netguard import parse_allow_list

        parse_allow_list(value)  # one rule for what an exemption may be: the guard's
        return value

    @field_validator("log_format")
    @classmethod
    def _known_log_format(cls, value: str) -> str:
        if value not in ("text", "json"):
            raise ValueError("GUARA_LOG_FORMAT must be 'text' or 'json'")
        return value

    @field_validator("metrics_addr")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is not None:
            split_address(value)
        return value

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str | None) -> str | None:
        if value is not None and value not in RUNTIMES:
            raise ValueError("GUARA_RUNTIME must be 'engine', 'kubernetes' or 'render'")
        return value

    @field_validator("engine_url")
    @classmethod
    def _unix_socket(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("unix:///"):
            raise ValueError("the engine URL must be a unix socket: unix:///path/to/socket")
        return value

    @field_validator("engine_publish_ip")
    @classmethod
    def _an_address(cls, value: str) -> str:
        ipaddress.ip_address(value)  # ValueError names the bad value
        return value

    @property
    def effective_engine_url(self) -> str | None:
        """The configured engine socket, else the first default socket that exists (None: none)."""
        if self.engine_url:
            return self.engine_url
        found = next((path for path in ENGINE_SOCKETS if Path(path).exists()), None)
        return f"unix://{found}" if found else None

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

    def registry_options(
        self, *, ca_file: Path | None = None, on_secret: Callable[[SecretStr], None] | None = None
    ) -> RegistryOptions:
        """How guara reaches registries under these settings: the server's and ``guara preflight``'s.
        ``ca_file`` replaces GUARA_EXTRA_CA_FILE (the CLI's --ca-file)."""
        from guara.registry import RegistryOptions  # the registry client, only where it is used

        return RegistryOptions.build(
            ca_file=ca_file or self.extra_ca_file,
            ssrf_allow=self.ssrf_allow,
            timeout=self.preflight_timeout_s,
            allow_http=self.allow_http_registries,
            aws_endpoint_url=self.aws_endpoint_url,
            on_secret=on_secret,
        )


def redact_url(url: str) -> str:
    """A database or Redis URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # any unparsable URL: show its scheme only
        return url.split(":", 1)[0] + "://…"
