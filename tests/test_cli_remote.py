"""The remote commands against a real `guara serve` process and the registry lab: login, the whole
create → test → deploy → logs flow, `--json` output, exit codes and errors, and secrets given on stdin
that never reach any output or the config file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from guara.secrets import ensure_key_file
from tests.lab import AccessRule, Lab
from tests.lab.apps import APP_V1, AppImages
from tests.lab.engines import EngineHandle
from tests.support import serve
from tests.test_canary import _forms

pytestmark = pytest.mark.lab


def _environ_without_guara() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GUARA_")}


def _admin(*args: str, env: dict[str, str], stdin: str = "") -> str:
    """A local admin command (user, token) on the server's own settings; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "guara.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


@dataclass
class Remote:
    """A user's machine: its own config dir and no server settings, talking to `url` with `token`."""

    url: str
    token: str
    home: Path
    server_log: Path
    outputs: list[str] = field(default_factory=list)

    @property
    def config_file(self) -> Path:
        return self.home / "config" / "guara" / "config.json"

    def run(
        self, *args: str, stdin: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "guara.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={
                **_environ_without_guara(),
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / "config"),
                **(env or {}),
            },
            timeout=120,
            check=False,
        )
        self.outputs += [done.stdout, done.stderr]
        return done

    def ok(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        return done

    def json(self, *args: str, stdin: str = "") -> Any:
        return json.loads(self.ok(*args, "--json", stdin=stdin).stdout)

    def login(self) -> None:
        self.ok("login", "--url", self.url, "--token-stdin", stdin=self.token + "\n")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the remote commands speak HTTP, and the API tests already run on both databases."""
    return f"sqlite:///{tmp_path / 'guara.db'}"


@pytest.fixture
def remote(settings_env: dict[str, str], lab: Lab, tmp_path: Path) -> Iterator[Remote]:
    env = {**_environ_without_guara(), **settings_env, "GUARA_EXTRA_CA_FILE": str(lab.ca_file)}
    _admin(
        "user", "create", "--email", "dev@example.com", "--password-stdin", env=env, stdin="a long password\n"
    )
    token = _admin("token", "create", "--email", "dev@example.com", env=env).strip()
    data_dir = Path(settings_env["GUARA_DATA_DIR"])
    with serve(env, data_dir / "server.log") as url:
        yield Remote(url=url, token=token, home=tmp_path / "home", server_log=data_dir / "server.log")


def _canary_user(lab: Lab) -> tuple[str, str]:
    """A registry account whose password is a canary, allowed to pull acme/* from the token registry."""
    user = f"cli-{uuid.uuid4().hex[:12]}"
    canary = f"canary-{uuid.uuid4().hex}-ñ"
    lab.issuer.users[user] = canary
    lab.issuer.rules.append(AccessRule(user, "acme/*", frozenset({"pull"})))
    return user, canary


def test_login_keeps_url_and_token_for_the_owner_only(remote: Remote) -> None:
    remote.login()
    assert stat.S_IMODE(remote.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(remote.config_file.parent.stat().st_mode) == 0o700
    assert json.loads(remote.config_file.read_text()) == {"url": remote.url, "token": remote.token}
    assert remote.json("projects", "list") == []
    assert remote.token not in "".join(remote.outputs)


def test_login_with_a_wrong_token_stores_nothing(remote: Remote) -> None:
    refused = remote.run("login", "--url", remote.url, "--token-stdin", stdin="gua_not-a-token\n")
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.startswith("guara: not_authenticated: ")
    assert "Traceback" not in refused.stderr
    assert not remote.config_file.exists()


def test_without_a_login_or_with_a_wrong_token(remote: Remote) -> None:
    nobody = remote.run("projects", "list")
    assert nobody.returncode == 1
    assert "not_logged_in" in nobody.stderr and "guara login" in nobody.stderr
    # An address copied from the API's (…/api/v1) still names the server.
    remote.ok("login", "--url", remote.url + "/api/v1/", "--token-stdin", stdin=remote.token + "\n")
    assert json.loads(remote.config_file.read_text())["url"] == remote.url
    # The stored token only goes to the stored server.
    elsewhere = remote.run("projects", "list", env={"GUARA_URL": "http://127.0.0.2:1"})
    assert elsewhere.returncode == 1
    assert elsewhere.stderr.startswith("guara: not_logged_in: GUARA_URL names http://127.0.0.2:1")
    wrong = remote.run("projects", "list", "--json", env={"GUARA_TOKEN": "gua_wrong"})
    assert wrong.returncode == 1
    assert wrong.stdout == ""
    assert json.loads(wrong.stderr)["code"] == "not_authenticated"
    # GUARA_URL and GUARA_TOKEN alone are a login too, without any config file.
    remote.config_file.unlink()
    by_env = remote.run(
        "projects", "list", "--json", env={"GUARA_URL": remote.url, "GUARA_TOKEN": remote.token}
    )
    assert by_env.returncode == 0, by_env.stderr
    assert json.loads(by_env.stdout) == []


def test_secrets_only_from_stdin(remote: Remote) -> None:
    no_token = remote.run("login", "--url", remote.url)
    assert no_token.returncode == 2
    assert "--token-stdin" in no_token.stderr
    remote.login()
    remote.ok("projects", "create", "demo")
    no_password = remote.run(
        "services", "create", "--project", "demo", "--name", "api", "--image", "x/y:1", "--username", "u"
    )
    assert no_password.returncode == 2
    assert "--password-stdin" in no_password.stderr
    unreachable = remote.run("projects", "list", env={"GUARA_URL": "http://127.0.0.1:1", "GUARA_TOKEN": "x"})
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("guara: unreachable: ")


def test_create_test_deploy_flow(remote: Remote, lab: Lab) -> None:
    user, canary = _canary_user(lab)
    image = lab.token.ref("acme/api:v1")
    remote.login()

    project = remote.json("projects", "create", "shop")
    assert project["name"] == "shop" and project["role"] == "owner"
    assert remote.ok("projects", "list").stdout.splitlines()[1].split() == ["shop", project["id"], "owner"]

    created = remote.json(
        "services", "create", "--project", "shop", "--name", "api", "--image", image,
        "--username", user, "--password-stdin",
        stdin=canary + "\n",
    )  # fmt: skip
    assert created["project_id"] == project["id"]
    assert created["registry_credentials"]["registry"] == lab.token.host  # taken from the image
    assert created["registry_credentials"]["verification"] == "passed"
    [listed] = remote.json("services", "list", "--project", project["id"])
    assert listed["id"] == created["id"]

    tested = remote.json("services", "test", "api")
    assert tested["ok"] is True
    assert tested["digest"] == lab.token.images["acme/api:v1"]
    assert remote.ok("services", "test", created["id"], "--project", "shop").stdout.startswith("ok: ")

    deployed = remote.ok("deploy", "api", "--wait")
    lines = deployed.stdout.splitlines()
    assert lines[0].startswith("deployment ") and lines[0].endswith(": pending")
    assert any(line.startswith("succeeded: ") for line in lines), lines
    assert f"digest: {lab.token.images['acme/api:v1']}" in lines
    again = remote.json("deploy", "api", "--project", "shop", "--wait")
    assert again["status"] == "succeeded"
    assert again["service_id"] == created["id"]
    started = remote.json("deploy", "api")
    assert started["status"] == "pending"

    # The render runtime runs nothing: no logs, said with the API's code.
    no_logs = remote.run("logs", "api", "--tail", "5")
    assert no_logs.returncode == 1
    assert no_logs.stderr.startswith("guara: not_supported: ")

    # What the user saw, the stored login, and the server's own log (the password went in a JSON body).
    files = [remote.config_file.read_bytes(), remote.server_log.read_bytes()]
    everything = b"".join([*(text.encode() for text in remote.outputs), *files])
    assert [form for form in _forms(user, canary) if form in everything] == []


def test_failures_show_the_api_code(remote: Remote, lab: Lab) -> None:
    remote.login()
    remote.ok("projects", "create", "one")
    remote.ok("projects", "create", "two")

    wrong = remote.run(
        "services", "create", "--project", "one", "--name", "api", "--image", lab.token.ref("acme/api:v1"),
        "--username", "alice", "--password-stdin",
        stdin="not the password\n",
    )  # fmt: skip
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("guara: auth_failed: ")
    assert "nothing was stored" in wrong.stderr
    assert "not the password" not in wrong.stdout + wrong.stderr

    missing = lab.anonymous.ref("acme/missing:v1")
    for project in ("one", "two"):
        remote.ok("services", "create", "--project", project, "--name", "api", "--image", missing)
    ambiguous = remote.run("deploy", "api")
    assert ambiguous.returncode == 1
    assert "ambiguous" in ambiguous.stderr and "--project" in ambiguous.stderr
    unknown = remote.run("services", "test", "nope", "--json")
    assert unknown.returncode == 1
    assert json.loads(unknown.stderr)["code"] == "not_found"

    failed = remote.run("deploy", "api", "--project", "one", "--wait")
    assert failed.returncode == 1
    assert failed.stdout.splitlines()[-1].endswith(": failed")
    assert failed.stderr.startswith("guara: manifest_not_found: deployment failed: ")
    failed_json = remote.run("deploy", "api", "--project", "two", "--wait", "--json")
    assert failed_json.returncode == 1
    assert json.loads(failed_json.stdout)["code"] == "manifest_not_found"
    assert json.loads(failed_json.stderr)["code"] == "manifest_not_found"
    test_failed = remote.run("services", "test", "api", "--project", "two")
    assert test_failed.returncode == 1
    assert test_failed.stdout.startswith("failed (manifest_not_found): ")


@pytest.mark.engine
def test_deploy_and_logs_on_a_container_engine(
    podman_engine: EngineHandle, lab: Lab, app_images: AppImages, tmp_path: Path
) -> None:
    """With the engine runtime the deploy runs the container: --wait ends on 'running', logs answer."""
    key_file = tmp_path / "data" / "master.key"
    ensure_key_file(key_file)
    env = {
        **{k: v for k, v in _environ_without_guara().items() if k != "DOCKER_HOST"},
        "GUARA_DATA_DIR": str(tmp_path / "data"),
        "GUARA_MASTER_KEY_FILE": str(key_file),
        "GUARA_SSRF_ALLOW": "127.0.0.0/8",
        "GUARA_EXTRA_CA_FILE": str(lab.ca_file),
        "GUARA_RUNTIME": "engine",
        "GUARA_ENGINE_URL": podman_engine.url,
        "GUARA_ENGINE_START_TIMEOUT_S": "20",
    }
    _admin("user", "create", "--email", "dev@example.com", "--password-stdin", env=env, stdin="long enough\n")
    token = _admin("token", "create", "--email", "dev@example.com", env=env).strip()
    source = app_images.token
    with serve(env, tmp_path / "server.log") as url:
        remote = Remote(url=url, token=token, home=tmp_path / "home", server_log=tmp_path / "server.log")
        remote.login()
        remote.ok("projects", "create", "shop")
        remote.ok(
            "services", "create", "--project", "shop", "--name", "web", "--image", source.tag_ref(APP_V1),
            "--username", source.username, "--password-stdin",
            stdin=source.password + "\n",
        )  # fmt: skip
        deployed = remote.ok("deploy", "web", "--wait")
        final = deployed.stdout.splitlines()
        running = next(line for line in final if line.startswith("running at "))
        address = running.removeprefix("running at ").split(": ", 1)[0]
        with httpx.Client(trust_env=False, timeout=10) as http:
            assert http.get(address).text == app_images.bodies[APP_V1]
        deployment_id = final[0].split()[1]
        logs = remote.json("logs", "web", "--tail", "5")
        assert logs["deployment_id"] == deployment_id
        assert len(logs["lines"]) <= 5
        remote.ok("logs", "web", "--project", "shop")
        [service] = remote.json("services", "list", "--project", "shop")
        assert service["url"] == address
        stopped = httpx.post(
            f"{url}/api/v1/services/{service['id']}/stop", headers={"Authorization": f"Bearer {token}"}
        )
        assert stopped.status_code == 200, stopped.text
    assert source.password not in "".join(remote.outputs)


def test_a_rate_limited_test_connection_says_when_to_retry(remote: Remote, lab: Lab) -> None:
    remote.login()
    remote.ok("projects", "create", "shop")
    image = lab.anonymous.ref("acme/api:v1")
    remote.ok("services", "create", "--project", "shop", "--name", "api", "--image", image)
    for _ in range(5):  # five Test Connections a minute per user
        remote.ok("services", "test", "api")
    limited = remote.run("services", "test", "api")
    assert limited.returncode == 1
    assert limited.stderr.startswith("guara: rate_limited: ")
    assert "(retry in " in limited.stderr
    limited_json = remote.run("services", "test", "api", "--json")
    assert limited_json.returncode == 1
    error = json.loads(limited_json.stderr)
    assert error["code"] == "rate_limited" and error["retry_after"] > 0


def test_a_server_that_is_not_guara(lab: Lab, tmp_path: Path) -> None:
    """A registry (TLS under the lab CA) is no guara: trusted through SSL_CERT_FILE, its 404 is shown as
    what it is; without that trust the certificate is refused. Nothing is stored either way."""
    remote = Remote(url=lab.anonymous.url, token="gua_x", home=tmp_path, server_log=tmp_path / "none")
    foreign = remote.run(
        "login",
        "--url",
        remote.url,
        "--token-stdin",
        stdin="gua_x\n",
        env={"SSL_CERT_FILE": str(lab.ca_file)},
    )
    assert foreign.returncode == 1
    assert foreign.stderr.startswith("guara: http_404: ")
    assert "not a guara error" in foreign.stderr
    untrusted = remote.run("login", "--url", remote.url, "--token-stdin", stdin="gua_x\n")
    assert untrusted.returncode == 1
    assert untrusted.stderr.startswith("guara: tls_error: ")
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    assert not remote.config_file.exists()
    assert "gua_x" not in "".join(remote.outputs)


def test_the_cli_imports_the_remote_client_only_when_a_remote_command_runs() -> None:
    """Registering the remote commands keeps `guara preflight` (and every local command) starting fast."""
    probe = "import sys, guara.cli; print(sorted(m for m in sys.modules if m.startswith('guara.remote')))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env=_environ_without_guara(),
    )
    assert loaded.stdout.strip() == "['guara.remote', 'guara.remote.commands']"
