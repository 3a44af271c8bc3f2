"""The guara command: serve on embedded defaults, db upgrade, users, tokens, bad settings."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import free_port


def guara(
    *args: str, env: dict[str, str], stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guara.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**_clean_environ(), **env},
        timeout=timeout,
        check=False,
    )


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GUARA_")}


def test_user_and_token_create(settings_env: dict[str, str]) -> None:
    created = guara(
        "user",
        "create",
        "--email",
        "Ops@Example.com",
        "--password-stdin",
        env=settings_env,
        stdin="a long password\n",
    )
    assert created.returncode == 0, created.stderr
    assert "a long password" not in created.stdout + created.stderr
    token = guara("token", "create", "--email", "ops@example.com", env=settings_env)
    assert token.returncode == 0, token.stderr
    lines = token.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gua_")
    named = guara(
        "token",
        "create",
        "--email",
        "ops@example.com",
        "--name",
        "ci",
        "--expires-in",
        "never",
        env=settings_env,
    )
    assert named.returncode == 0, named.stderr
    assert len(named.stdout.splitlines()) == 1 and named.stdout.startswith("gua_")
    assert "never expires" in named.stderr
    assert (
        guara(
            "token", "create", "--email", "ops@example.com", "--expires-in", "30d", env=settings_env
        ).returncode
        == 0
    )
    bad = guara("token", "create", "--email", "ops@example.com", "--expires-in", "soon", env=settings_env)
    assert bad.returncode == 2 and "--expires-in" in bad.stderr
    missing = guara("token", "create", "--email", "nobody@example.com", env=settings_env)
    assert missing.returncode == 1
    assert "no user" in missing.stderr


def test_user_create_without_stdin_flag_is_a_usage_error(settings_env: dict[str, str]) -> None:
    result = guara("user", "create", "--email", "a@example.com", env=settings_env)
    assert result.returncode == 2


def test_db_upgrade(settings_env: dict[str, str]) -> None:
    result = guara("db", "upgrade", env=settings_env)
    assert result.returncode == 0, result.stderr
    assert "newest revision" in result.stdout


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        "GUARA_DATA_DIR": str(tmp_path),
        "GUARA_DATABASE_URL": "postgresql://guara:hunter2pw@127.0.0.1:1/guara",
    }
    result = guara("db", "upgrade", env=env)
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr
    assert "hunter2pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_malformed_master_key_stops_with_a_clear_message(tmp_path: Path) -> None:
    env = {"GUARA_DATA_DIR": str(tmp_path), "GUARA_MASTER_KEY": "not-base64-and-short"}
    result = guara("db", "upgrade", env=env)
    assert result.returncode == 2
    assert "master key" in result.stderr.lower()
    assert "not-base64-and-short" not in result.stderr


def test_bad_settings_are_usage_errors(tmp_path: Path) -> None:
    result = guara("db", "upgrade", env={"GUARA_DATA_DIR": str(tmp_path), "GUARA_SSRF_ALLOW": "10.0.0.0/33"})
    assert result.returncode == 2
    assert "GUARA_SSRF_ALLOW" in result.stderr


def test_serve_on_embedded_defaults(tmp_path: Path) -> None:
    """No settings at all: SQLite and a 0600 key file in the per-user data dir, announced loudly."""
    port = free_port()
    env = {**_clean_environ(), "XDG_DATA_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "guara.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "guara serve did not become ready"
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=False).headers["location"] == "/setup"
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    data_dir = tmp_path / "xdg" / "guara"
    key_file = data_dir / "master.key"
    assert (data_dir / "guara.db").exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "DEVELOPMENT DEFAULT" in output
    assert str(key_file) in output


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["preflight", "--help"]])
def test_help(args: list[str], tmp_path: Path) -> None:
    assert guara(*args, env={"GUARA_DATA_DIR": str(tmp_path)}).returncode == 0
