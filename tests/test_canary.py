"""A canary password goes through the whole product; then every byte guara wrote is searched for it.

The server runs as a real process at debug log level, once with text logs and once with JSON logs;
the walk ends with an API token and by deleting the service. Afterwards the test greps the raw bytes
of every file in the data dir (database, WAL, key file, logs), the server's output, every response
body (``/metrics`` too) and the audit entries (and, on PostgreSQL, a pg_dump) for the canary, its
base64, its hex and the base64 of ``user:canary`` (what a Basic header carries).

Scheduled credential checks run in the background (every second here) with the canary password, and
a project webhook's signing secret is a second canary: a check that fails (the registry changed the
password) is delivered, signed with it, to a loopback receiver whose bodies are searched too.

The user name is a canary too, of a weaker kind: it is stored in clear (and shown masked), so it is
searched for only where it must never appear, the logs and the responses, raw and percent-encoded
(a token request carries it as ``account=`` in its URL, which httpx logs at INFO).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from tests.api.test_webhooks import receiver, verify
from tests.lab import AccessRule, Lab
from tests.lab.cloud import ECR_TOKEN_PASSWORD, GOOGLE_ACCESS_TOKEN, GoogleTokenServer, MotoAws
from tests.support import cli_user_with_token, serve

pytestmark = pytest.mark.lab


def _forms(user: str, canary: str) -> list[bytes]:
    raw = canary.encode()
    return [
        raw,
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        raw.hex().encode(),
        base64.b64encode(f"{user}:{canary}".encode()),
        canary.encode("unicode_escape"),
    ]


def _username_forms(user: str) -> list[bytes]:
    return [user.encode(), quote(user, safe="").encode(), quote_plus(user).encode()]


def _until_health(call: Callable[..., httpx.Response], service: str, status: str) -> dict[str, Any]:
    """Wait until the background checks report ``status`` for the service's credentials."""
    deadline = time.monotonic() + 60
    while True:
        health: dict[str, Any] = call("GET", f"/services/{service}", 200).json()["registry_credentials"][
            "health"
        ]
        if health["status"] == status and health["last_checked_at"]:
            return health
        assert time.monotonic() < deadline, health
        time.sleep(0.1)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_canary_never_leaves_memory(
    settings_env: dict[str, str], lab: Lab, tmp_path: Path, log_format: str
) -> None:
    canary = f"canary-{uuid.uuid4().hex}-ñ"
    # '@' and '+' change under URL encoding: the encoded spellings are searched for too.
    user = f"canary+{uuid.uuid4().hex[:12]}@example.com"
    lab.issuer.users[user] = canary
    lab.issuer.rules.append(AccessRule(user, "acme/*", frozenset({"pull"})))
    data_dir = Path(settings_env["GUARA_DATA_DIR"])
    log_path = data_dir / "server.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GUARA_")},
        **settings_env,
        "GUARA_EXTRA_CA_FILE": str(lab.ca_file),
    }
    cli = [sys.executable, "-m", "guara.cli"]
    token = cli_user_with_token(env, "canary@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    image = lab.token.ref("acme/api:v1")
    bodies: list[bytes] = []
    outputs: list[str] = []
    webhook_canary = f"whsec-canary-{uuid.uuid4().hex}"

    with (
        receiver() as hook,
        serve(
            {**env, "GUARA_LOG_LEVEL": "debug", "GUARA_LOG_FORMAT": log_format, "GUARA_HEALTH_INTERVAL": "1"},
            log_path,
        ) as url,
    ):
        api = httpx.Client(base_url=url + "/api/v1", headers=headers, timeout=30)

        def call(method: str, path: str, expect: int, **kwargs: object) -> httpx.Response:
            response = api.request(method, path, **kwargs)  # type: ignore[arg-type]
            bodies.append(response.content)
            assert response.status_code == expect, response.text
            return response

        project = call("POST", "/projects", 201, json={"name": "canary"}).json()["id"]
        creds = {"registry": lab.token.host, "username": user, "password": canary}
        service = call(
            "POST",
            f"/projects/{project}/services",
            201,
            json={"name": "api", "image": image, "registry_credentials": creds},
        ).json()["id"]
        assert call("POST", "/registry/test", 200, json={"image": image, **creds}).json()["ok"] is True
        # Five preflights a minute: create, test, this failed save, the deploy of unverified
        # credentials below, and the test after the key rotation.
        failed = call(
            "PUT", f"/services/{service}/registry-credentials", 422, json={**creds, "username": "bob"}
        )
        assert failed.json()["code"] == "auth_failed"
        call(
            "PUT", f"/services/{service}/registry-credentials", 200, json={**creds, "skip_verification": True}
        )
        call(
            "PUT",
            f"/services/{service}/registry-credentials",
            422,
            json={**creds, "registry": lab.basic.host, "skip_verification": True},
        )
        call("GET", f"/services/{service}", 200)
        call("GET", f"/projects/{project}/audit-logs", 200)
        # Deploy with the canary credentials: they reach the registry, never a response or the audit.
        started = call("POST", f"/services/{service}/deployments", 202).json()
        assert started["status"] == "pending"
        deadline = time.monotonic() + 30
        while True:
            deployed = call("GET", f"/services/{service}/deployments/{started['id']}", 200).json()
            if deployed["status"] in ("succeeded", "failed"):
                break
            assert time.monotonic() < deadline, deployed
            time.sleep(0.05)
        assert deployed["status"] == "succeeded", deployed["message"]
        assert deployed["with_credentials"] is True
        assert deployed["digest"] == lab.token.images["acme/api:v1"]
        rendered = json.dumps(deployed["manifests"], ensure_ascii=False).encode()
        assert [form for form in _forms(user, canary) if form in rendered] == []
        [secret] = [m for m in deployed["manifests"] if m["kind"] == "Secret"]
        assert secret["data"] == {".dockerconfigjson": "[REDACTED]"}
        call("GET", f"/services/{service}/deployments", 200)
        deploy_audit = call("GET", f"/projects/{project}/audit-logs", 200).json()["entries"][0]
        assert deploy_audit["action"] == "service.deploy"
        call("PUT", f"/projects/{project}/webhook", 200, json={"url": hook.url, "secret": webhook_canary})
        # The background checks use the stored canary; the registry then changes the password: the
        # failing check is audited and delivered to the webhook, signed with the second canary.
        _until_health(call, service, "passing")
        lab.issuer.users[user] = f"changed-{uuid.uuid4().hex}"
        failing = _until_health(call, service, "failing")
        assert failing["code"] == "auth_failed"
        assert hook.got.wait(30)
        lab.issuer.users[user] = canary
        _until_health(call, service, "passing")
        call("GET", f"/projects/{project}/webhook", 200)
        rotated = subprocess.run(
            [*cli, "keys", "rotate"], env=env, capture_output=True, text=True, check=True
        )
        outputs += [rotated.stdout, rotated.stderr]
        assert "re-sealed 2 secrets" in rotated.stdout
        call(
            "POST",
            "/registry/test",
            200,
            json={"image": image, "registry": lab.token.host, "service_id": service},
        )
        metrics = httpx.get(url + "/metrics")
        assert metrics.status_code == 200
        bodies.append(metrics.content)
        # An API token is a secret too: shown in its one response, never logged or stored.
        issued = call("POST", "/tokens", 201, json={"name": "canary"}).json()["token"]
        bodies.pop()
        # Deleting the service destroys the sealed canary and leaks nothing on the way; the audit stays.
        call("DELETE", f"/services/{service}", 204)
        entries = call("GET", f"/projects/{project}/audit-logs", 200).json()["entries"]
        assert entries[0]["action"] == "service.delete"
        assert "service.create" in {entry["action"] for entry in entries}

    assert hook.bodies and all(
        verify(headers["x-guara-signature"], body, webhook_canary)
        for body, headers in zip(hook.bodies, hook.headers, strict=True)
    )
    haystacks: dict[str, bytes] = {f"response {i}": body for i, body in enumerate(bodies)}
    haystacks.update({f"webhook body {i}": body for i, body in enumerate(hook.bodies)})
    haystacks.update({f"cli output {i}": text.encode() for i, text in enumerate(outputs)})
    for path in data_dir.rglob("*"):
        if path.is_file():
            haystacks[str(path)] = path.read_bytes()
    database_url = settings_env["GUARA_DATABASE_URL"]
    if database_url.startswith("postgresql") and shutil.which("pg_dump"):
        dump_url = database_url.replace("postgresql+psycopg://", "postgresql://")
        haystacks["pg_dump"] = subprocess.run(["pg_dump", dump_url], capture_output=True, check=True).stdout
    assert log_path.read_bytes(), "the server wrote no log at all"
    debug = b'"level": "debug"' if log_format == "json" else b"DEBUG"
    assert debug in log_path.read_bytes(), "not at debug level"
    leaks = [
        (name, form) for name, data in haystacks.items() for form in _forms(user, canary) if form in data
    ]
    assert leaks == []
    assert [name for name, data in haystacks.items() if issued.encode() in data] == []
    secret_leaks = [
        (name, form)
        for name, data in haystacks.items()
        for form in _forms("", webhook_canary)[:4]
        if form in data
    ]
    assert secret_leaks == []
    # The user name is in the database (file, WAL, pg_dump) by design; logs and responses must not show it.
    shown = {name: data for name, data in haystacks.items() if name.startswith(("response ", "cli output "))}
    shown["server log"] = log_path.read_bytes()
    username_leaks = [
        (name, form) for name, data in shown.items() for form in _username_forms(user) if form in data
    ]
    assert username_leaks == []


def _haystacks(settings_env: dict[str, str], bodies: list[bytes], outputs: list[str]) -> dict[str, bytes]:
    """Every byte guara wrote or answered: responses, CLI output, the data dir, a pg_dump."""
    haystacks: dict[str, bytes] = {f"response {i}": body for i, body in enumerate(bodies)}
    haystacks.update({f"cli output {i}": text.encode() for i, text in enumerate(outputs)})
    for path in Path(settings_env["GUARA_DATA_DIR"]).rglob("*"):
        if path.is_file():
            haystacks[str(path)] = path.read_bytes()
    database_url = settings_env["GUARA_DATABASE_URL"]
    if database_url.startswith("postgresql") and shutil.which("pg_dump"):
        dump_url = database_url.replace("postgresql+psycopg://", "postgresql://")
        haystacks["pg_dump"] = subprocess.run(["pg_dump", dump_url], capture_output=True, check=True).stdout
    return haystacks


def test_cloud_keys_and_their_tokens_never_leave_memory(
    settings_env: dict[str, str],
    lab: Lab,
    moto_aws: MotoAws,
    google_token_server: GoogleTokenServer,
) -> None:
    """The AWS secret access key, the Google key's private key, and the short-lived logins they are
    exchanged for (ECR's password, Google's access token) go through create, Test Connection, deploy,
    a save that keeps them and a key rotation; then nothing guara wrote or answered holds any of them."""
    access_token = f"ya29.canary-{uuid.uuid4().hex}"
    google_token_server.access_token = access_token
    lab.issuer.users["oauth2accesstoken"] = access_token
    json_key = google_token_server.json_key()
    private_key = json.loads(json_key)["private_key"]
    pem_lines = [line for line in private_key.splitlines() if line and not line.startswith("-----")]
    aws_secret = moto_aws.puller.secret_access_key
    data_dir = Path(settings_env["GUARA_DATA_DIR"])
    log_path = data_dir / "server.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GUARA_")},
        **settings_env,
        "GUARA_EXTRA_CA_FILE": str(lab.ca_file),
        "GUARA_AWS_ENDPOINT_URL": moto_aws.url,
    }
    cli = [sys.executable, "-m", "guara.cli"]
    token = cli_user_with_token(env, "canary@example.com")
    bodies: list[bytes] = []
    outputs: list[str] = []
    aws = {
        "registry": lab.basic.host,
        "kind": "aws_ecr",
        "aws_access_key_id": moto_aws.puller.access_key_id,
        "aws_secret_access_key": aws_secret,
        "aws_region": "eu-west-1",
    }
    google = {"registry": lab.token.host, "kind": "google", "google_json_key": json_key}
    cases = [(lab.basic.ref("acme/api:v1"), aws, "aws"), (lab.token.ref("acme/api:v1"), google, "google")]
    try:
        with serve({**env, "GUARA_LOG_LEVEL": "debug"}, log_path) as url:
            api = httpx.Client(
                base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
            )

            def call(method: str, path: str, expect: int, **kwargs: object) -> httpx.Response:
                response = api.request(method, path, **kwargs)  # type: ignore[arg-type]
                bodies.append(response.content)
                assert response.status_code == expect, response.text
                return response

            project = call("POST", "/projects", 201, json={"name": "canary"}).json()["id"]
            services = {}
            for image, creds, name in cases:
                services[name] = call(
                    "POST",
                    f"/projects/{project}/services",
                    201,
                    json={"name": name, "image": image, "registry_credentials": creds},
                ).json()["id"]
            assert (
                call("POST", "/registry/test", 200, json={"image": cases[0][0], **aws}).json()["ok"] is True
            )
            for image, creds, name in cases:
                service = services[name]
                started = call("POST", f"/services/{service}/deployments", 202).json()
                deadline = time.monotonic() + 30
                while True:
                    deployed = call("GET", f"/services/{service}/deployments/{started['id']}", 200).json()
                    if deployed["status"] in ("succeeded", "failed"):
                        break
                    assert time.monotonic() < deadline, deployed
                    time.sleep(0.05)
                assert deployed["status"] == "succeeded", deployed["message"]
                assert deployed["with_credentials"] is True
                # Saved again leaving the secret out (after the deploy: an unverified deploy counts as
                # a preflight, and the five a minute are spent on the rest).
                kept = {"registry": creds["registry"], "kind": creds["kind"], "skip_verification": True}
                call("PUT", f"/services/{service}/registry-credentials", 200, json=kept)
                call("GET", f"/services/{service}", 200)
            call("GET", f"/projects/{project}/audit-logs", 200)
            rotated = subprocess.run(
                [*cli, "keys", "rotate"], env=env, capture_output=True, text=True, check=True
            )
            outputs += [rotated.stdout, rotated.stderr]
            assert "re-sealed 2 secrets" in rotated.stdout
            for image, creds, name in cases:
                tested = call(
                    "POST",
                    "/registry/test",
                    200,
                    json={"image": image, "registry": creds["registry"], "service_id": services[name]},
                )
                assert tested.json()["ok"] is True, tested.text
    finally:
        google_token_server.access_token = GOOGLE_ACCESS_TOKEN
        lab.issuer.users["oauth2accesstoken"] = GOOGLE_ACCESS_TOKEN

    haystacks = _haystacks(settings_env, bodies, outputs)
    assert any(b"DEBUG" in v for k, v in haystacks.items() if k.endswith("server.log")), "not at debug level"
    forms = [
        *_forms("AWS", aws_secret),
        *_forms("AWS", ECR_TOKEN_PASSWORD),
        *_forms("oauth2accesstoken", access_token),
        *_forms("_json_key", json_key),
        *(line.encode() for line in pem_lines),
    ]
    leaks = [(name, form[:24]) for name, data in haystacks.items() for form in forms if form in data]
    assert leaks == []
