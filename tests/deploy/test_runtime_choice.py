"""Which runtime `guara serve` picks, and that it says why: GUARA_RUNTIME when set; otherwise a
container engine when its socket answers, else render only."""

from __future__ import annotations

from pathlib import Path

import pytest

from guara import config
from guara.config import ConfigurationError, Settings
from guara.context import runtime_for
from guara.core.engine_runtime import EngineRuntime
from guara.core.runtimes import KubernetesRuntime, RenderRuntime
from tests.lab.engines import EngineHandle


def _settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


def test_no_socket_means_render_only_said_loudly(tmp_path: Path) -> None:
    runtime, why = runtime_for(_settings(engine_url=f"unix://{tmp_path / 'absent.sock'}"))
    assert isinstance(runtime, RenderRuntime)
    assert "RENDERED ONLY" in why and "absent.sock" in why


@pytest.mark.engine
def test_an_engine_that_answers_is_picked(engine: EngineHandle) -> None:
    runtime, why = runtime_for(_settings(engine_url=engine.url))
    assert isinstance(runtime, EngineRuntime)
    assert engine.url in why and engine.name in why


def test_an_explicit_runtime_wins(tmp_path: Path) -> None:
    assert isinstance(runtime_for(_settings(runtime="render"))[0], RenderRuntime)
    assert isinstance(runtime_for(_settings(runtime="kubernetes"))[0], KubernetesRuntime)
    engine, _why = runtime_for(_settings(runtime="engine", engine_url=f"unix://{tmp_path / 'later.sock'}"))
    assert isinstance(engine, EngineRuntime)  # the engine may come up after guara: deploys then say so


def test_engine_urls_come_from_the_settings_or_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/1000/podman/podman.sock")
    assert Settings().effective_engine_url == "unix:///run/user/1000/podman/podman.sock"
    monkeypatch.setenv("GUARA_ENGINE_URL", "unix:///srv/engine.sock")
    assert Settings().effective_engine_url == "unix:///srv/engine.sock"
    with pytest.raises(ValueError, match="unix socket"):
        _settings(engine_url="tcp://10.0.0.1:2375")
    monkeypatch.delenv("GUARA_ENGINE_URL")
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.setattr(config, "ENGINE_SOCKETS", ("/nonexistent/engine.sock",))
    with pytest.raises(ConfigurationError, match="GUARA_ENGINE_URL"):
        runtime_for(_settings(runtime="engine", engine_url=None))
