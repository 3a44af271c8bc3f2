"""`guara preflight`: the dashboard's preflight from the command line, with its JSON and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab import Lab

pytestmark = pytest.mark.lab


def preflight(*args: str, stdin: str = "", loopback: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARA_")}
    if loopback:
        env["GUARA_SSRF_ALLOW"] = "127.0.0.0/8"
    return subprocess.run(
        [sys.executable, "-m", "guara.cli", "preflight", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_ok_prints_one_json_object_and_exits_0(lab: Lab) -> None:
    result = preflight(
        lab.token.ref("acme/api:v1"),
        "--username",
        "alice",
        "--password-stdin",
        "--ca-file",
        str(lab.ca_file),
        "--json",
        stdin=lab.token.users["alice"] + "\n",
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload) == {"ok", "code", "message", "digest", "elapsed_ms"}
    assert payload["ok"] is True and payload["code"] is None
    assert payload["digest"] == lab.token.images["acme/api:v1"]
    assert lab.token.users["alice"] not in result.stdout + result.stderr


def test_wrong_password_exits_1_with_auth_failed(lab: Lab) -> None:
    result = preflight(
        lab.basic.ref("acme/api:v1"),
        "--registry",
        f"https://{lab.basic.host}",
        "--username",
        "alice",
        "--password-stdin",
        "--ca-file",
        str(lab.ca_file),
        "--json",
        stdin="wrong-password\n",
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)["code"] == "auth_failed"
    assert "wrong-password" not in result.stdout + result.stderr


def test_loopback_without_the_exemption_is_ssrf_blocked(lab: Lab) -> None:
    result = preflight(
        lab.anonymous.ref("acme/api:v1"), "--ca-file", str(lab.ca_file), "--json", loopback=False
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)["code"] == "ssrf_blocked"


@pytest.mark.parametrize(
    "image",
    [
        "docker/Docker",
        "https://github.com/docker/docker",
        "-docker",
        # hosts httpx cannot even build a URL from: refused by the parser, never a traceback
        "0177.0.0.1/a:b",
        "127.000.000.001/a:b",
        "999.1.1.1/a:b",
        "xn--zz.example/a:b",
    ],
)
def test_malformed_reference_is_a_failed_preflight(image: str) -> None:
    result = preflight("--json", "--", image)  # `--`: "-docker" is an argument, not an option
    assert result.returncode == 1, result.stderr
    payload = json.loads(result.stdout)
    assert payload["code"] == "invalid_url"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("registry", ["https://0177.0.0.1", "256.256.256.256:5000", "xn--a-.example"])
def test_malformed_registry_is_a_failed_preflight(registry: str) -> None:
    result = preflight("--json", "--registry", registry, "--", "ghcr.io/acme/api:v1")
    assert result.returncode == 1, result.stderr
    payload = json.loads(result.stdout)
    assert payload["code"] == "invalid_url"
    assert "invalid registry host" in payload["message"]


def test_text_output(lab: Lab) -> None:
    result = preflight(lab.anonymous.ref("acme/api:v1"), "--ca-file", str(lab.ca_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")
    assert "digest: sha256:" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["busybox", "--password-stdin"],  # a password without a username
        ["busybox", "--ca-file", "/nonexistent/ca.pem"],
        ["busybox", "--no-such-flag"],
        [],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    assert preflight(*args, stdin="x\n").returncode == 2


def test_text_output_names_the_registrys_usual_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the advice is under test: the preflight answers auth_failed without a network (ghcr.io is
    out of reach here, and never looked up)."""
    from typer.testing import CliRunner

    import guara.registry
    from guara.cli import app
    from guara.registry import PreflightCode, PreflightResult

    async def rejected(image: str, **options: object) -> PreflightResult:
        return PreflightResult(False, PreflightCode.AUTH_FAILED, "the registry answered 401", None, 5)

    monkeypatch.setattr(guara.registry, "preflight", rejected)
    runner = CliRunner()
    args = ["preflight", "ghcr.io/acme/api:v1", "--username", "octocat", "--password-stdin"]
    text = runner.invoke(app, args, input="ghp_x\n")
    assert text.exit_code == 1
    assert "failed (auth_failed)" in text.output and "hint: GitHub rejected the token" in text.output
    assert "read:packages" in text.output
    as_json = runner.invoke(app, [*args, "--json"], input="ghp_x\n")
    assert "hint" not in as_json.output and json.loads(as_json.output)["code"] == "auth_failed"
    unknown = runner.invoke(app, ["preflight", "registry.example.com/acme/api:v1"])
    assert "failed (auth_failed)" in unknown.output and "hint:" not in unknown.output
