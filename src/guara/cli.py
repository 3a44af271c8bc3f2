"""The ``guara`` command: a thin Typer layer over ``guara.core``, reading the same settings, and the
remote commands (``guara.remote``) that drive a running guara over its JSON API.

Each command imports what it needs when it runs: ``guara preflight`` starts like a tool (the registry
client and the settings), not like the server (the database, the web framework, the runtimes)."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import anyio
import typer
from pydantic import SecretStr, ValidationError

from guara.config import ConfigurationError, Settings
from guara.remote import commands as remote

if TYPE_CHECKING:
    from guara.context import AppContext
    from guara.registry import CloudKey

app = typer.Typer(no_args_is_help=True, add_completion=False, help="guara control plane")
db_app = typer.Typer(no_args_is_help=True, help="database")
user_app = typer.Typer(no_args_is_help=True, help="users")
token_app = typer.Typer(no_args_is_help=True, help="API tokens")
keys_app = typer.Typer(no_args_is_help=True, help="master keys")
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(keys_app, name="keys")

log = logging.getLogger("guara")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"guara: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"GUARA_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise _fail(f"invalid settings: {problems}", 2) from None


def _setup_logging(level: str, settings: Settings | None = None) -> None:
    from guara.logs import configure_logging

    configure_logging(level, (settings or _settings()).log_format)


def _context(*, announce: bool = False, migrate: bool = True) -> AppContext:
    from guara.context import AppContext
    from guara.secrets import MasterKeyError
    from guara.store import DatabaseUnavailable

    settings = _settings()
    try:
        context = AppContext.from_settings(settings, announce=announce)
        if migrate:
            context.db.upgrade()
    except MasterKeyError as exc:
        raise _fail(f"master key: {exc}", 2) from None
    except ConfigurationError as exc:
        raise _fail(f"invalid settings: {exc}", 2) from None
    except DatabaseUnavailable as exc:
        raise _fail(str(exc)) from None
    return context


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    log_level: Annotated[str | None, typer.Option(help="log level (default GUARA_LOG_LEVEL or info)")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="worker processes sharing the address")] = 1,
) -> None:
    """Run the API and the dashboard (migrates the database first)."""
    settings = _settings()
    level = (log_level or settings.log_level).lower()
    _setup_logging(level, settings)
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Before guara.metrics is first imported, here and in every worker: they count into files.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="guara-metrics-")
    context = _context(announce=True)
    log.info(
        "guara serving on http://%s:%d (database %s, %d process%s)",
        host,
        port,
        context.db.display_url,
        workers,
        "" if workers == 1 else "es",
    )
    if settings.metrics_addr:
        log.info("metrics on http://%s/metrics", settings.metrics_addr)
    from guara.serving import run_server

    run_server(context, host=host, port=port, log_level=level, workers=workers)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations up to the newest revision."""
    _setup_logging("WARNING")
    context = _context()
    typer.echo(f"database {context.db.display_url} is at the newest revision")


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="login email")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin")
    ] = False,
) -> None:
    """Create a user (the first user also completes the web set-up)."""
    from guara.core import accounts
    from guara.core.errors import GuaraError

    if not password_stdin:
        raise _fail("pass the password on stdin with --password-stdin", 2)
    password = sys.stdin.readline().rstrip("\r\n")
    context = _context()
    try:
        principal = anyio.run(lambda: accounts.create_user(context, email=email, password=password))
    except GuaraError as exc:
        raise _fail(exc.message) from None
    typer.echo(f"created user {principal.email}")


@token_app.command("create")
def token_create(
    email: Annotated[str, typer.Option(help="the token's user")],
    name: Annotated[str, typer.Option(help="what the token is for (shown in the token list)")] = "cli",
    expires_in: Annotated[
        str, typer.Option(help="days until it expires (e.g. 30 or 30d), or 'never'")
    ] = "90",
) -> None:
    """Print a new API token for a user, alone on stdout."""
    from guara.core import accounts
    from guara.core.errors import GuaraError

    days = _days(expires_in)
    context = _context()
    try:
        token = anyio.run(
            lambda: accounts.create_api_token(context, email=email, name=name, expires_in_days=days)
        )
    except GuaraError as exc:
        raise _fail(exc.message) from None
    if days is None:
        typer.echo("guara: warning: this token never expires; it works until revoked", err=True)
    typer.echo(token)


def _days(text: str) -> int | None:
    """``--expires-in``: a number of days (``30`` or ``30d``), or ``never`` (None)."""
    value = text.strip().lower()
    if value == "never":
        return None
    digits = value.removesuffix("d")
    if not digits.isascii() or not digits.isdigit():
        raise _fail("--expires-in takes a number of days (e.g. 30 or 30d) or 'never'", 2)
    return int(digits)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a master-key version and re-seal every stored secret under it (resumable)."""
    from guara.core import keys

    context = _context()
    try:
        report = anyio.run(
            lambda: keys.rotate(context, on_progress=lambda done: typer.echo(f"re-sealed {done} secrets"))
        )
    except keys.RotationImpossible as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"master key version {report.version} is current; re-sealed {report.resealed} secrets")


@keys_app.command("status")
def keys_status() -> None:
    """How many stored secrets each master-key version still seals."""
    from guara.core import keys

    context = _context()
    counts = anyio.run(keys.status, context)
    typer.echo(f"current version: {context.keyring.current_version}")
    for version in sorted(set(context.keyring.versions) | set(counts)):
        typer.echo(f"v{version}: {counts.get(version, 0)} secrets")


@app.command()
def preflight(
    image: Annotated[str, typer.Argument(help="image reference, e.g. ghcr.io/acme/api:v1")],
    registry: Annotated[str | None, typer.Option(help="registry host or https:// URL")] = None,
    username: Annotated[str | None, typer.Option(help="registry username")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin")
    ] = False,
    aws_key: Annotated[
        bool,
        typer.Option(
            "--aws-key",
            help="AWS ECR: exchange the key in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for a login",
        ),
    ] = False,
    aws_region: Annotated[
        str | None, typer.Option(help="with --aws-key: the region, when the registry host names none")
    ] = None,
    aws_role_arn: Annotated[str | None, typer.Option(help="with --aws-key: a role to assume first")] = None,
    google_json_key: Annotated[
        Path | None, typer.Option(help="Google Artifact Registry / GCR: a service-account JSON key file")
    ] = None,
    ca_file: Annotated[Path | None, typer.Option(help="extra PEM roots to trust")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Run the Test Connection preflight against a registry. Exit 0 ok, 1 failed, 2 usage."""
    from guara.registry import PreflightResult
    from guara.registry import preflight as run_preflight
    from guara.registry.known import advice_for, registry_named

    settings = _settings()
    if (aws_region or aws_role_arn) and not aws_key:
        raise _fail("--aws-region and --aws-role-arn go with --aws-key", 2)
    if sum((username is not None or password_stdin, aws_key, google_json_key is not None)) > 1:
        raise _fail("sign in one way: --username, --aws-key or --google-json-key", 2)
    password = SecretStr(sys.stdin.readline().rstrip("\r\n")) if password_stdin else None
    if password is not None and username is None:
        raise _fail("--password-stdin needs --username", 2)
    if ca_file is not None and not ca_file.is_file():
        raise _fail(f"--ca-file {ca_file} is not a readable file", 2)
    cloud_key = _cloud_key(aws_key, aws_region, aws_role_arn, google_json_key)
    options = settings.registry_options(ca_file=ca_file)

    async def run() -> PreflightResult:
        return await run_preflight(
            image,
            registry=registry,
            username=username,
            password=password,
            options=options,
            cloud_key=cloud_key,
        )

    result = anyio.run(run)
    payload = result.as_dict()
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        status = "ok" if payload["ok"] else f"failed ({payload['code']})"
        typer.echo(f"{status}: {payload['message']} [{payload['elapsed_ms']} ms]")
        if payload["digest"]:
            typer.echo(f"digest: {payload['digest']}")
        advice = advice_for(registry_named(registry, image), result.code.value if result.code else None)
        if advice:
            typer.echo(f"hint: {advice}")
    raise typer.Exit(0 if payload["ok"] else 1)


def _cloud_key(
    aws_key: bool, region: str | None, role_arn: str | None, google_json_key: Path | None
) -> CloudKey | None:
    """The cloud key the flags name (None: none); a usage error (exit 2) when it is missing or malformed."""
    from guara.registry import AwsEcrKey, GoogleKey, InvalidCloudKey

    try:
        if aws_key:
            key_id, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
            if not key_id or not secret:
                raise _fail("--aws-key reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: set both", 2)
            return AwsEcrKey(key_id, SecretStr(secret), region, role_arn)
        if google_json_key is not None:
            try:
                text = google_json_key.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise _fail(f"--google-json-key {google_json_key}: {exc.__class__.__name__}", 2) from None
            return GoogleKey.parse(SecretStr(text))
    except InvalidCloudKey as exc:
        raise _fail(str(exc), 2) from None
    return None


# The remote commands, over a running guara's JSON API (their client is imported when one runs).
app.command()(remote.login)
app.add_typer(remote.projects_app, name="projects")
app.add_typer(remote.services_app, name="services")
app.command()(remote.deploy)
app.command()(remote.logs)


if __name__ == "__main__":  # pragma: no cover
    app()
