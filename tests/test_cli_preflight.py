"""`guara preflight`: the dashboard's preflight from the command line, with its JSON and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab import Lab
from tests.lab.cloud import ECR_TOKEN_PASSWORD, GOOGLE_ACCESS_TOKEN, GoogleTokenServer, MotoAws

pytestmark = pytest.mark.lab


def preflight(
    *args: str, stdin: str = "", loopback: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("GUARA_", "AWS_"))}
    env = {**inherited, **(env or {})}
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
        ["busybox", "--aws-key"],  # no AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment
        ["busybox", "--aws-region", "eu-west-1"],  # a region without a key
        ["busybox", "--aws-key", "--username", "u"],
        ["busybox", "--google-json-key", "/nonexistent/key.json"],
        ["busybox", "--google-json-key", "{key}", "--aws-key"],
        ["busybox", "--google-json-key", "{key}", "--username", "u", "--password-stdin"],
        ["busybox", "--google-json-key", "{not_a_key}"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    key.write_text('{"type": "service_account"}')  # readable; which flags go with it is under test
    not_a_key = tmp_path / "not-a-key.json"
    not_a_key.write_text("not json")
    paths = {"{key}": str(key), "{not_a_key}": str(not_a_key)}
    result = preflight(*(paths.get(arg, arg) for arg in args), stdin="x\n")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_aws_key_from_the_environment_is_exchanged_for_an_ecr_login(lab: Lab, moto_aws: MotoAws) -> None:
    """The AWS CLI's convention: the key in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, never an argument."""
    env = {
        "AWS_ACCESS_KEY_ID": moto_aws.puller.access_key_id,
        "AWS_SECRET_ACCESS_KEY": moto_aws.puller.secret_access_key,
        "GUARA_AWS_ENDPOINT_URL": moto_aws.url,
    }
    args = [lab.basic.ref("acme/api:v1"), "--aws-key", "--aws-region", "eu-west-1"]
    result = preflight(*args, "--ca-file", str(lab.ca_file), "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads(result.stdout)
    assert payload["ok"] is True
    assert payload["digest"] == lab.basic.images["acme/api:v1"]
    for secret in (moto_aws.puller.secret_access_key, ECR_TOKEN_PASSWORD):
        assert secret not in result.stdout + result.stderr

    wrong = preflight(
        *args,
        "--ca-file",
        str(lab.ca_file),
        "--json",
        env={**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"},
    )
    assert wrong.returncode == 1
    assert json.loads(wrong.stdout)["code"] == "auth_failed"


def test_google_json_key_file_is_exchanged_for_a_token(
    lab: Lab, google_token_server: GoogleTokenServer, tmp_path: Path
) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(google_token_server.json_key())
    result = preflight(
        lab.token.ref("acme/api:v1"),
        "--google-json-key",
        str(key_file),
        "--ca-file",
        str(lab.ca_file),
        "--json",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["digest"] == lab.token.images["acme/api:v1"]
    private_key = json.loads(google_token_server.json_key())["private_key"]
    for secret in (private_key.splitlines()[1], GOOGLE_ACCESS_TOKEN):
        assert secret not in result.stdout + result.stderr


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
