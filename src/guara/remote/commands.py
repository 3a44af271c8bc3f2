"""The remote commands: ``guara login``, ``projects``, ``services``, ``deploy`` and ``logs``.

They talk to a running guara over its JSON API with an API token. Like the rest of the CLI, this
module only declares the commands: the HTTP client and the stored login are imported when a command
runs. Human output by default, ``--json`` for scripts; errors print the API's code and message and
exit 1 (with ``--json``, as one JSON object on stderr); usage errors exit 2."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from guara.remote.client import Deployment, GuaraClient, Preflight
    from guara.remote.errors import RemoteError

projects_app = typer.Typer(no_args_is_help=True, help="projects on the guara server you logged in to")
services_app = typer.Typer(no_args_is_help=True, help="services on the guara server you logged in to")

# What the API says of a deployment on its way, and of one that ended well.
IN_PROGRESS = frozenset({"pending", "resolving", "starting"})
SUCCEEDED = frozenset({"succeeded", "running"})
# A save with verification that failed answers 422 with the preflight's own code.
PREFLIGHT_CODES = frozenset(
    {"invalid_url", "auth_failed", "manifest_not_found", "timeout", "ssrf_blocked", "network_error"}
)
POLL_FIRST_S = 0.25
POLL_MAX_S = 2.0

JsonFlag = Annotated[bool, typer.Option("--json", help="print the API's JSON object(s)")]
ProjectOption = Annotated[str | None, typer.Option("--project", help="the service's project (id or name)")]
ServiceArgument = Annotated[str, typer.Argument(help="service id or name")]


def _usage(message: str) -> NoReturn:
    typer.echo(f"guara: {message}", err=True)
    raise typer.Exit(2)


def _failed(error: RemoteError, as_json: bool) -> typer.Exit:
    if as_json:
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.retry_after is not None:
            body["retry_after"] = error.retry_after
        typer.echo(json.dumps(body), err=True)
    else:
        hint = f" (retry in {error.retry_after} s)" if error.retry_after is not None else ""
        typer.echo(f"guara: {error.code}: {error.message}{hint}", err=True)
    return typer.Exit(1)


@contextlib.contextmanager
def _remote(as_json: bool) -> Iterator[GuaraClient]:
    """A client for the current login; any RemoteError inside ends the command with its code."""
    from guara.config import ClientSettings
    from guara.remote.client import GuaraClient
    from guara.remote.errors import RemoteError
    from guara.remote.login import current

    try:
        with GuaraClient(current(ClientSettings())) as client:
            yield client
    except RemoteError as exc:
        raise _failed(exc, as_json) from None


def _emit(payload: object) -> None:
    typer.echo(json.dumps(payload))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in (headers, *rows):
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _read_secret_line(what: str) -> str:
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        _usage(f"no {what} on stdin")
    return value


def login(
    url: Annotated[str, typer.Option(help="the guara server, e.g. https://guara.example.com")],
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="read the API token from stdin (guara token create)")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Check an API token against a guara server and store both for the remote commands."""
    from pydantic import SecretStr

    from guara.config import ClientSettings
    from guara.remote.client import GuaraClient
    from guara.remote.errors import RemoteError
    from guara.remote.login import Login, is_plain_http_off_machine, normalize_url, save

    if not token_stdin:
        _usage("pass the API token on stdin with --token-stdin")
    token = SecretStr(_read_secret_line("token").strip())
    try:
        stored = Login(normalize_url(url), token)
        with GuaraClient(stored) as client:
            projects = client.list_projects()  # proves the URL and the token before anything is kept
        path = save(ClientSettings(), stored)
    except RemoteError as exc:
        raise _failed(exc, as_json) from None
    if is_plain_http_off_machine(stored.url):
        typer.echo("guara: warning: plain http: the token crosses the network unencrypted", err=True)
    if as_json:
        _emit({"url": stored.url, "config_file": str(path), "projects": len(projects)})
    else:
        typer.echo(f"logged in to {stored.url} ({len(projects)} projects); login stored in {path}")


@projects_app.command("list")
def projects_list(as_json: JsonFlag = False) -> None:
    """Your projects."""
    with _remote(as_json) as client:
        projects = client.list_projects()
    if as_json:
        _emit([project.as_json() for project in projects])
    elif not projects:
        typer.echo("no projects yet: guara projects create NAME")
    else:
        _table(("NAME", "ID", "ROLE"), [(p.name, str(p.id), p.role) for p in projects])


@projects_app.command("create")
def projects_create(
    name: Annotated[str, typer.Argument(help="the project's name")], as_json: JsonFlag = False
) -> None:
    """Create a project (you become its owner)."""
    with _remote(as_json) as client:
        project = client.create_project(name)
    if as_json:
        _emit(project.as_json())
    else:
        typer.echo(f"created project {project.name} ({project.id})")


@services_app.command("list")
def services_list(
    project: Annotated[str, typer.Option("--project", help="project id or name")], as_json: JsonFlag = False
) -> None:
    """The services of a project."""
    from guara.remote.names import find_project

    with _remote(as_json) as client:
        services = client.list_services(find_project(client, project).id)
    if as_json:
        _emit([service.as_json() for service in services])
    elif not services:
        typer.echo(f"no services in {project} yet")
    else:
        rows = [
            (s.name, str(s.id), s.image, s.registry_credentials.registry if s.registry_credentials else "-")
            for s in services
        ]
        _table(("NAME", "ID", "IMAGE", "CREDENTIALS"), rows)


@services_app.command("create")
def services_create(
    project: Annotated[str, typer.Option("--project", help="project id or name")],
    name: Annotated[str, typer.Option("--name", help="the service's name")],
    image: Annotated[str, typer.Option("--image", help="image reference, e.g. ghcr.io/acme/api:v1")],
    registry: Annotated[
        str | None, typer.Option("--registry", help="registry of the credentials (default: the image's)")
    ] = None,
    username: Annotated[str | None, typer.Option("--username", help="registry username")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the registry password from stdin")
    ] = False,
    skip_verification: Annotated[
        bool, typer.Option("--skip-verification", help="store the credentials without a Test Connection")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a Docker Image service; with credentials, saved after a passing Test Connection."""
    from pydantic import SecretStr

    from guara.remote.client import NewCredentials
    from guara.remote.errors import RemoteError
    from guara.remote.names import find_project

    if password_stdin != (username is not None):
        _usage("private registry credentials need both --username and --password-stdin")
    if registry is not None and username is None:
        _usage("--registry is the registry of the credentials: give --username and --password-stdin too")
    credentials = None
    if username is not None:
        password = SecretStr(_read_secret_line("password"))
        if registry is None:
            registry = _image_registry(image, as_json)
        credentials = NewCredentials(registry=registry, username=username, password=password)
    with _remote(as_json) as client:
        where = find_project(client, project)
        try:
            service = client.create_service(
                where.id, name=name, image=image, credentials=credentials, skip_verification=skip_verification
            )
        except RemoteError as exc:
            # A failed verification answers with the preflight's own code: say what to do about it.
            if exc.status == 422 and credentials is not None and exc.code in PREFLIGHT_CODES:
                exc.message += " (nothing was stored; --skip-verification saves without the test)"
            raise
    if as_json:
        _emit(service.as_json())
        return
    typer.echo(f"created service {service.name} ({service.id}) in project {where.name}")
    if service.registry_credentials is not None:
        creds = service.registry_credentials
        typer.echo(f"credentials for {creds.registry} as {creds.username_masked}: {creds.verification}")


def _image_registry(image: str, as_json: bool) -> str:
    from guara.registry import InvalidReference, parse_image_reference
    from guara.remote.errors import RemoteError

    try:
        return parse_image_reference(image).registry
    except InvalidReference as exc:
        raise _failed(RemoteError("invalid_url", f"image reference: {exc}"), as_json) from None


@services_app.command("test")
def services_test(service: ServiceArgument, project: ProjectOption = None, as_json: JsonFlag = False) -> None:
    """Test Connection: pull-check the service's image with its stored credentials. Exit 1 if it fails."""
    from guara.remote.names import find_service

    with _remote(as_json) as client:
        result = client.test_connection(find_service(client, service, project=project))
    if as_json:
        _emit(result.as_json())
    else:
        _print_preflight(result)
    raise typer.Exit(0 if result.ok else 1)


def _print_preflight(result: Preflight) -> None:
    status = "ok" if result.ok else f"failed ({result.code})"
    typer.echo(f"{status}: {result.message} [{result.elapsed_ms} ms]")
    if result.digest:
        typer.echo(f"digest: {result.digest}")


def deploy(
    service: ServiceArgument,
    project: ProjectOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow the deployment until it ends")] = False,
    timeout: Annotated[float, typer.Option(help="with --wait: give up after this many seconds", min=1)] = 900,
    as_json: JsonFlag = False,
) -> None:
    """Deploy a service. With --wait: exit 0 when it succeeds or runs, 1 when it fails."""
    from guara.remote.errors import RemoteError
    from guara.remote.names import find_service

    with _remote(as_json) as client:
        target = find_service(client, service, project=project)
        deployment = client.start_deployment(target.id)
        if not wait:
            if as_json:
                _emit(deployment.as_json())
            else:
                typer.echo(f"deployment {deployment.id} of {target.name}: {deployment.status}")
            return
        if not as_json:
            typer.echo(f"deployment {deployment.id} of {target.name}: {deployment.status}")
        try:
            deployment = _follow(client, deployment, timeout=timeout, progress=not as_json)
        except KeyboardInterrupt:
            typer.echo(f"\nguara: stopped following deployment {deployment.id}; it goes on", err=True)
            raise typer.Exit(130) from None
    if as_json:
        _emit(deployment.as_json())
    if deployment.status in SUCCEEDED:
        if not as_json:
            where = f" at {deployment.url}" if deployment.url else ""
            typer.echo(f"{deployment.status}{where}: {deployment.message}")
            if deployment.digest:
                typer.echo(f"digest: {deployment.digest}")
        return
    code = deployment.code or deployment.status
    raise _failed(RemoteError(code, f"deployment {deployment.status}: {deployment.message}"), as_json)


def _follow(client: GuaraClient, deployment: Deployment, *, timeout: float, progress: bool) -> Deployment:
    """Poll the deployment until it leaves the in-progress statuses, printing each new status."""
    from guara.remote.errors import RemoteError

    deadline = time.monotonic() + timeout
    pause = POLL_FIRST_S
    while deployment.status in IN_PROGRESS:
        if time.monotonic() >= deadline:
            raise RemoteError(
                "wait_timeout", f"deployment {deployment.id} is still {deployment.status} after {timeout:g} s"
            )
        time.sleep(pause)
        pause = min(pause * 2, POLL_MAX_S)
        latest = client.get_deployment(deployment.service_id, deployment.id)
        if progress and latest.status != deployment.status:
            typer.echo(f"deployment {latest.id}: {latest.status}")
        deployment = latest
    return deployment


def logs(
    service: ServiceArgument,
    project: ProjectOption = None,
    tail: Annotated[int, typer.Option(help="how many of the last lines", min=1, max=1000)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """The last log lines of the service's running container (container engine runtime)."""
    from guara.remote.names import find_service

    with _remote(as_json) as client:
        answer = client.service_logs(find_service(client, service, project=project).id, tail=tail)
    if as_json:
        _emit(answer.as_json())
        return
    if not answer.lines:
        typer.echo(f"no logs yet (deployment {answer.deployment_id})", err=True)
    for line in answer.lines:
        typer.echo(line)
