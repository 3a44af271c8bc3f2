"""The application context: settings and the long-lived parts every use case needs.

Built once at start (``AppContext.from_settings``) by ``guara serve``, the CLI or a test, handed to every
use case in ``guara.core``, and closed by whoever built it. The web app's lifespan stops the deployment
runner (``AppContext.stop_background_work``), so no background task outlives the app.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import httpx

from guara.config import ENGINE_SOCKETS, ConfigurationError, Settings
from guara.core.deploy_runner import DeploymentRunner
from guara.core.engine_runtime import EngineRuntime
from guara.core.health_scheduler import HealthScheduler
from guara.core.runtimes import KubernetesRuntime, RenderRuntime, Runtime
from guara.core.webhooks import WebhookSender
from guara.deploy import DockerEngine, KubernetesApplier
from guara.ratelimit import (
    DEPLOYS_PER_MINUTE,
    PREFLIGHTS_PER_MINUTE,
    PROBES_PER_MINUTE,
    SIGN_INS_PER_MINUTE,
    RateLimiter,
)
from guara.secrets import MasterKeyring, ensure_key_file, load_keyring, register_secret
from guara.store import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limiters:
    """The per-user limits, each its own window (a namespace in the shared store)."""

    # Test Connection and every verified save: the seed's 5 a minute.
    preflight: RateLimiter
    # The wizard's anonymous "is this image private?" check.
    probe: RateLimiter
    deploy: RateLimiter
    # Keyed by account and client address, not by user.
    sign_in: RateLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> Limiters:
        url = settings.redis_url
        return cls(
            preflight=RateLimiter(url, per_minute=PREFLIGHTS_PER_MINUTE, namespace="preflight"),
            probe=RateLimiter(url, per_minute=PROBES_PER_MINUTE, namespace="probe"),
            deploy=RateLimiter(url, per_minute=DEPLOYS_PER_MINUTE, namespace="deploy"),
            sign_in=RateLimiter(url, per_minute=SIGN_INS_PER_MINUTE, namespace="sign-in"),
        )


class AppContext:
    """Settings, the database, the master keys, how to reach registries, the limiters and the
    deployment runner."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        keyring: MasterKeyring,
        limiters: Limiters,
        deployments: DeploymentRunner,
    ) -> None:
        self.settings = settings
        self.db = db
        self.limiters = limiters
        self.deployments = deployments
        self.health = HealthScheduler(interval_s=settings.health_interval)
        self.webhooks = WebhookSender()
        self.registry = settings.registry_options(on_secret=register_secret)
        self._keyring = keyring
        # `guara keys rotate` appends to the key file from another process: notice it and reload.
        self._key_file: Path | None = (
            None if settings.master_key is not None else settings.effective_master_key_file
        )
        self._key_stamp = _stamp(self._key_file)

    @classmethod
    def from_settings(cls, settings: Settings, *, announce: bool = False) -> AppContext:
        keyring = load_master_keyring(settings, announce=announce)
        if settings.ssrf_allow and announce:
            log.warning(
                "GUARA_SSRF_ALLOW=%s: the network guard lets preflights and deploys reach these ranges",
                settings.ssrf_allow,
            )
        runtime, why = runtime_for(settings)
        if announce:
            log.warning("deploys: %s", why)
        return cls(
            settings=settings,
            db=Database(settings.effective_database_url),
            keyring=keyring,
            limiters=Limiters.from_settings(settings),
            deployments=DeploymentRunner(runtime=runtime),
        )

    @property
    def keyring(self) -> MasterKeyring:
        stamp = _stamp(self._key_file)
        if stamp != self._key_stamp and self._key_file is not None:
            self._keyring = load_keyring(key_b64=None, key_file=self._key_file)
            self._key_stamp = stamp
            log.info("master key file changed; current key version is now %d", self._keyring.current_version)
        return self._keyring

    def start_background_work(self) -> None:
        """Start what runs beside the requests, on the running event loop: the deployment lease and
        the credential health checks."""
        self.deployments.start(self)
        self.health.start(self)

    async def stop_background_work(self) -> None:
        """Stop the health checks and cancel webhook deliveries in flight (logged as interrupted);
        let running deployments finish (up to the runner's grace period), cancel the rest."""
        await self.health.aclose()
        await self.webhooks.aclose()
        await self.deployments.aclose()

    def close(self) -> None:
        self.db.dispose()


def runtime_for(settings: Settings) -> tuple[Runtime, str]:
    """Where deploys go, and a sentence saying why: GUARA_RUNTIME when set; otherwise a container
    engine when its socket answers now, else render only."""
    if settings.runtime == "kubernetes":
        applier = KubernetesApplier.from_environment(kubeconfig=settings.kubeconfig)
        return KubernetesRuntime(applier), "applied to Kubernetes (GUARA_RUNTIME=kubernetes)"
    if settings.runtime == "render":
        return RenderRuntime(), "rendered only, nothing runs (GUARA_RUNTIME=render)"
    url = settings.effective_engine_url
    if settings.runtime == "engine":
        if url is None:
            raise ConfigurationError(
                "GUARA_RUNTIME=engine needs an engine socket: set GUARA_ENGINE_URL=unix:///… (or DOCKER_HOST)"
            )
        return _engine_runtime(settings, url), f"run on the container engine at {url} (GUARA_RUNTIME=engine)"
    product = engine_answers(url) if url else None
    if url is None or product is None:
        tried = url or " or ".join(ENGINE_SOCKETS)
        return RenderRuntime(), (
            f"RENDERED ONLY, nothing runs: no container engine answered at {tried}. Set GUARA_ENGINE_URL "
            "(or run Podman/Docker there), or GUARA_RUNTIME=kubernetes"
        )
    return _engine_runtime(settings, url), f"run on the container engine at {url} ({product})"


def _engine_runtime(settings: Settings, url: str) -> EngineRuntime:
    return EngineRuntime(
        DockerEngine(url),
        publish_ip=settings.engine_publish_ip,
        start_timeout_s=settings.engine_start_timeout_s,
    )


def engine_answers(url: str, *, timeout_s: float = 2.0) -> str | None:
    """The engine's name when ``GET /_ping`` on its unix socket answers 200 now, else None."""
    transport = httpx.HTTPTransport(uds=url.removeprefix("unix://"))
    try:
        with httpx.Client(transport=transport, timeout=timeout_s, trust_env=False) as client:
            answer = client.get("http://engine/_ping")
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    server = answer.headers.get("Server", "")
    return "podman" if "libpod" in server.lower() or "podman" in server.lower() else "docker"


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
