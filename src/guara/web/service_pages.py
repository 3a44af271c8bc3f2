"""Service pages: the create wizard, Overview, Settings → Private Registry, and removing credentials.

Every page works as plain form posts; ``guara.js`` adds as-you-type checks, Test Connection without a
reload and the Save gate. Either way the server-side save is the source of truth: a verified save runs
the preflight again in ``guara.core.credentials``.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated, Any, TypedDict

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from guara.context import AppContext
from guara.core import (
    connection_tests,
    credentials,
    deployments,
    health_checks,
    projects,
    services,
    validation,
)
from guara.core.accounts import Principal
from guara.core.connection_tests import AccessProbe, ConnectionTest
from guara.core.credentials import CredentialsChange
from guara.core.errors import (
    Conflict,
    GuaraError,
    InvalidInput,
    NotFound,
    PreflightFailed,
    RateLimited,
)
from guara.core.projects import ProjectView
from guara.core.roles import Action
from guara.core.runtimes import RUNNING
from guara.core.services import ServiceView
from guara.core.validation import DEFAULT_PORT
from guara.http.deps import ContextDep
from guara.http.errors import status_for
from guara.registry import suggested_kind
from guara.web.auth import FormUser, WebUser
from guara.web.forms import (
    NO_SECRET,
    CloudFormDep,
    CredentialsFormValues,
    DeployFormValues,
    FormSecret,
    FormText,
    PageErrors,
    WizardValues,
    expiry_date,
    is_checked,
    new_credentials,
    optional_secret,
    optional_text,
    port_number,
)
from guara.web.presenters import (
    ConnectionResult,
    connection_result,
    connection_result_from,
    credentials_display,
    deployment_display,
    health_display,
    rate_limited_result,
    tag_moved_display,
)
from guara.web.views import render, see_other

router = APIRouter(include_in_schema=False)

BUILD_METHODS = (
    ("docker_image", "Docker Image", "Deploy a pre-built image from any OCI (V2) registry.", True),
    ("git", "Git repository", "Build from source on every push. Not available yet.", False),
    ("dockerfile", "Dockerfile", "Build a Dockerfile from a repository. Not available yet.", False),
)
PlatformField = Annotated[str, Form(alias="platform", max_length=100)]
SAVED_NOTES = {
    "deploy": "Deploy settings saved: the next deploy uses them.",
    "passed": "Credentials saved. Test Connection passed with these values.",
    "overridden": "Credentials saved without verifying. The next deploy will show whether they work.",
    "removed": f"Credentials removed. {credentials.ANONYMOUS_NOTE}",
    "checked": "Checked the stored credentials against the registry just now.",
}


def _failed_save_result(ctx: AppContext, exc: PreflightFailed, registry: str | None) -> ConnectionResult:
    return connection_result(
        ok=False,
        code=exc.code,
        message=exc.message,
        elapsed_ms=exc.elapsed_ms,
        digest=None,
        timeout_s=ctx.registry.timeout,
        registry=registry,
    )


class _Feedback(TypedDict, total=False):
    """What a form page shows after a test, or a save that failed, and with which status."""

    status_code: int
    result: ConnectionResult
    errors: PageErrors


def _failure(ctx: AppContext, exc: GuaraError, registry: str | None) -> _Feedback:
    """A test or save against ``registry`` that failed, as its form shows it: a result box (a failed
    preflight, the soft rate-limit notice) or field errors, with the status the API would give."""
    if isinstance(exc, PreflightFailed):
        return {"status_code": status_for(exc), "result": _failed_save_result(ctx, exc, registry)}
    if isinstance(exc, RateLimited):
        limit = ctx.limiters.preflight.item.amount
        return {
            "status_code": status_for(exc),
            "result": rate_limited_result(limit=limit, retry_after=exc.retry_after),
        }
    return {"status_code": status_for(exc), "errors": PageErrors.from_error(exc)}


# --- create wizard -----------------------------------------------------------------------------------


def _wizard(
    request: Request,
    *,
    project: ProjectView,
    values: WizardValues,
    status_code: int = 200,
    access: AccessProbe | None = None,
    result: ConnectionResult | None = None,
    errors: PageErrors | None = None,
    image_registry: str = "",
) -> Response:
    creds = values.credentials
    return render(
        request,
        "service_new.html",
        status_code=status_code,
        project=project,
        values=values,
        build_methods=BUILD_METHODS,
        access=access,
        result=result,
        errors=errors or PageErrors(),
        image_registry=image_registry,
        # Open the collapsed section when the server has something to say about it.
        credentials_open=bool(
            result
            or creds.username
            or creds.password_was_sent
            or creds.aws_access_key_id
            or (errors and any(f != "name" and f != "image" and f != "port" for f in errors.fields))
        ),
    )


@router.get("/projects/{project_id}/services/new")
async def wizard_page(request: Request, ctx: ContextDep, user: WebUser, project_id: uuid.UUID) -> Response:
    project = await projects.get_project(ctx, user, project_id=project_id, action=Action.SERVICE_CREATE)
    return _wizard(request, project=project, values=WizardValues())


@router.post("/projects/{project_id}/services/new")
async def wizard_submit(
    request: Request,
    ctx: ContextDep,
    user: FormUser,
    cloud: CloudFormDep,
    project_id: uuid.UUID,
    name: FormText = "",
    build_method: FormText = "docker_image",
    image: FormText = "",
    port: FormText = str(DEFAULT_PORT),
    health_path: FormText = "",
    registry: FormText = "",
    username: FormText = "",
    password: FormSecret = NO_SECRET,
    skip_verification: FormText = "",
    action: FormText = "save",
) -> Response:
    project = await projects.get_project(ctx, user, project_id=project_id)
    values = WizardValues(
        name=name.strip(),
        image=image.strip(),
        port=port.strip(),
        health_path=health_path.strip(),
        build_method=build_method,
        credentials=CredentialsFormValues.posted(
            registry=registry,
            username=username,
            password=password,
            skip_verification=skip_verification,
            cloud=cloud,
        ),
    )
    page: dict[str, Any] = {"project": project, "values": values}
    try:
        if build_method != "docker_image":
            raise InvalidInput(
                "only Docker Image is available as a build method for now", field="build_method"
            )
        reference = validation.image_reference(values.image)
        page["image_registry"] = reference.registry
        if not values.credentials.registry:
            values.credentials.registry = reference.registry
        if action == "check":
            if not cloud.is_cloud:  # the host suggests the kind (ECR, Google), also without JavaScript
                values.credentials.kind = suggested_kind(reference.registry) or "password"
            probe = await connection_tests.probe_image_access(ctx, user, image=values.image)
            return _wizard(request, access=probe, **page)
        if action == "test":
            typed = cloud.fields() if cloud.is_cloud else {}
            if not typed:
                typed = {"username": optional_text(username), "password": optional_secret(password)}
            test = ConnectionTest(image=values.image, registry=values.credentials.registry, **typed)
            tested = await _test_connection(ctx, user, test)
            return _wizard(request, **tested, **page)
        service = await services.create_service(
            ctx,
            user,
            project_id=project.id,
            name=values.name,
            image=values.image,
            port=port_number(values.port),
            health_path=values.health_path or None,
            registry_credentials=cloud.change(values.credentials.registry)
            if cloud.is_cloud
            else new_credentials(
                registry=values.credentials.registry,
                default_registry=reference.registry,
                username=username,
                password=password,
            ),
            skip_verification=values.credentials.skip_verification,
        )
    except NotFound:
        raise
    except GuaraError as exc:
        return _wizard(request, **_failure(ctx, exc, values.credentials.registry), **page)
    return see_other(f"/services/{service.id}?created=1")


async def _test_connection(ctx: AppContext, user: Principal, request: ConnectionTest) -> _Feedback:
    """Test Connection from a plain form post: the result box, with 422 when the test failed. A rate
    limit raises, and the form shows the soft notice (``_failure``)."""
    result = await connection_tests.run_connection_test(ctx, user, request)
    view = connection_result_from(result, timeout_s=ctx.registry.timeout, registry=request.named_registry)
    return {"status_code": 200 if view.ok else 422, "result": view}


# --- Overview and Settings -------------------------------------------------------------------------------


async def _service_context(ctx: AppContext, user: Principal, service_id: uuid.UUID) -> dict[str, Any]:
    service = await services.get_service(ctx, user, service_id=service_id)
    project = await projects.get_project(ctx, user, project_id=service.project_id)
    stored = service.registry_credentials
    return {
        "service": service,
        "project": project,
        "credentials": credentials_display(stored) if stored else None,
        "health": health_display(stored.health) if stored else None,
        "tag_moved": tag_moved_display(service.tag_moved) if service.tag_moved else None,
        "image_registry": validation.image_reference(service.image).registry,
    }


@router.get("/services/{service_id}")
async def service_page(
    request: Request,
    ctx: ContextDep,
    user: WebUser,
    service_id: uuid.UUID,
    created: str = "",
    stopped: str = "",
) -> Response:
    context = await _service_context(ctx, user, service_id)
    history = await deployments.list_deployments(ctx, user, service_id=service_id, limit=10)
    return render(
        request,
        "service_overview.html",
        tab="overview",
        created=bool(created),
        stopped=bool(stopped),
        deployments=[deployment_display(row) for row in history],
        deploying=any(row.active for row in history),
        live=next((deployment_display(row) for row in history if row.status == RUNNING), None),
        runtime=ctx.deployments.runtime.name,
        **context,
    )


@router.post("/services/{service_id}/stop")
async def stop_form(ctx: ContextDep, user: FormUser, service_id: uuid.UUID) -> Response:
    """The Stop button: remove the running container; deploy again to start it."""
    await deployments.stop_service(ctx, user, service_id=service_id)
    return see_other(f"/services/{service_id}?stopped=1")


@router.get("/services/{service_id}/logs")
async def logs_page(
    request: Request,
    ctx: ContextDep,
    user: WebUser,
    service_id: uuid.UUID,
    tail: Annotated[int, Query(ge=1, le=deployments.MAX_LOG_TAIL)] = deployments.DEFAULT_LOG_TAIL,
) -> Response:
    """The running container's last log lines (redacted, bounded)."""
    context = await _service_context(ctx, user, service_id)
    try:
        found = await deployments.service_logs(ctx, user, service_id=service_id, tail=tail)
    except Conflict as exc:
        return render(
            request, "service_logs.html", tab="logs", lines=None, notice=exc.message, tail=tail, **context
        )
    return render(
        request, "service_logs.html", tab="logs", lines=found.lines, notice="", tail=tail, **context
    )


@router.post("/services/{service_id}/deployments")
async def deploy_form(ctx: ContextDep, user: FormUser, service_id: uuid.UUID) -> Response:
    """The Deploy button: start a deployment in the background and show its progress on the Overview."""
    await deployments.start_deployment(ctx, user, service_id=service_id)
    return see_other(f"/services/{service_id}#deployments")


def _settings(
    request: Request,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    edit: bool = False,
    values: CredentialsFormValues | None = None,
    result: ConnectionResult | None = None,
    errors: PageErrors | None = None,
    note: str = "",
    **extra: Any,
) -> Response:
    shown = context["credentials"]
    service: ServiceView = context["service"]
    if values is None:
        registry = shown.registry if shown else context["image_registry"]
        values = CredentialsFormValues.suggested(registry, kind=shown.kind if shown else None)
    extra.setdefault(
        "deploy_values",
        DeployFormValues(
            service.image,
            service.platform,
            str(service.port),
            service.health_path or "",
            service.auto_deploy_on_tag_move,
        ),
    )
    extra.setdefault("deploy_errors", PageErrors())
    return render(
        request,
        "service_settings.html",
        status_code=status_code,
        tab="settings",
        edit=edit,
        values=values,
        result=result,
        errors=errors or PageErrors(),
        note=note,
        form_action=f"/services/{service.id}/settings/registry-credentials",
        **context,
        **extra,
    )


@router.get("/services/{service_id}/settings")
async def service_settings(
    request: Request,
    ctx: ContextDep,
    user: WebUser,
    service_id: uuid.UUID,
    edit: str = "",
    saved: str = "",
) -> Response:
    context = await _service_context(ctx, user, service_id)
    return _settings(request, context, edit=bool(edit), note=SAVED_NOTES.get(saved, ""))


@router.post("/services/{service_id}/settings/deploy")
async def save_deploy_settings_form(
    request: Request,
    ctx: ContextDep,
    user: FormUser,
    service_id: uuid.UUID,
    image: FormText = "",
    platform_name: PlatformField = "",
    port: FormText = "",
    health_path: FormText = "",
    auto_deploy_on_tag_move: FormText = "",
) -> Response:
    """Settings → Deploy: image, platform, port, health path and auto-deploy in one form (used by the
    next deploy)."""
    values = DeployFormValues(
        image=image.strip(),
        platform=platform_name.strip(),
        port=port.strip(),
        health_path=health_path.strip(),
        auto_deploy_on_tag_move=is_checked(auto_deploy_on_tag_move),
    )
    try:
        change = services.ServiceChange(
            image=values.image,
            platform=values.platform,
            port=port_number(values.port),
            health_path=values.health_path or None,
            auto_deploy_on_tag_move=values.auto_deploy_on_tag_move,
        )
        await services.update_service(ctx, user, service_id=service_id, change=change)
    except InvalidInput as exc:
        context = await _service_context(ctx, user, service_id)
        return _settings(
            request,
            context,
            status_code=status_for(exc),
            deploy_errors=PageErrors.from_error(exc),
            deploy_values=values,
        )
    return see_other(f"/services/{service_id}/settings?saved=deploy#deploy")


@router.post("/services/{service_id}/settings/registry-credentials")
async def save_credentials_form(
    request: Request,
    ctx: ContextDep,
    user: FormUser,
    cloud: CloudFormDep,
    service_id: uuid.UUID,
    registry: FormText = "",
    username: FormText = "",
    password: FormSecret = NO_SECRET,
    skip_verification: FormText = "",
    expires_on: FormText = "",
    action: FormText = "save",
) -> Response:
    context = await _service_context(ctx, user, service_id)
    service: ServiceView = context["service"]
    values = CredentialsFormValues.posted(
        registry=registry,
        username=username,
        password=password,
        skip_verification=skip_verification,
        default_registry=context["image_registry"],
        cloud=cloud,
    )
    page: dict[str, Any] = {"edit": True, "values": values, "expires_value": expires_on.strip()}
    try:
        if action == "test":
            tested = await _test_connection(
                ctx,
                user,
                ConnectionTest(
                    image=service.image,
                    registry=values.registry,
                    username=optional_text(username) if not cloud.is_cloud else None,
                    password=optional_secret(password) if not cloud.is_cloud else None,
                    service_id=service.id,
                    **cloud.fields(),
                ),
            )
            return _settings(request, context, **tested, **page)
        change = (
            cloud.change(values.registry)
            if cloud.is_cloud
            else CredentialsChange(values.registry, optional_text(username), optional_secret(password))
        )
        view = await credentials.save_credentials(
            ctx,
            user,
            service_id=service.id,
            change=dataclasses.replace(change, expires_on=expiry_date(expires_on)),
            skip_verification=values.skip_verification,
        )
    except NotFound:
        raise
    except GuaraError as exc:
        return _settings(request, context, **_failure(ctx, exc, values.registry), **page)
    return see_other(f"/services/{service.id}/settings?saved={view.verification}#private-registry")


@router.post("/services/{service_id}/settings/registry-credentials/check")
async def check_now_form(
    request: Request, ctx: ContextDep, user: FormUser, service_id: uuid.UUID
) -> Response:
    """Check now: one check of the stored credentials (counts against the Test Connection limit)."""
    try:
        await health_checks.check_now(ctx, user, service_id=service_id)
    except NotFound:
        raise
    except GuaraError as exc:  # the rate limit, no credentials, a racing save: said above the card
        context = await _service_context(ctx, user, service_id)
        return _settings(request, context, status_code=status_for(exc), errors=PageErrors(form=exc.message))
    return see_other(f"/services/{service_id}/settings?saved=checked#private-registry")


@router.get("/services/{service_id}/settings/registry-credentials/remove")
async def remove_confirm_page(
    request: Request, ctx: ContextDep, user: WebUser, service_id: uuid.UUID
) -> Response:
    await services.get_service(ctx, user, service_id=service_id, action=Action.CREDENTIALS_WRITE)
    context = await _service_context(ctx, user, service_id)
    if context["credentials"] is None:
        return see_other(f"/services/{service_id}/settings#private-registry")
    return render(request, "remove_credentials.html", tab="settings", **context)


@router.post("/services/{service_id}/settings/registry-credentials/remove")
async def remove_credentials_form(ctx: ContextDep, user: FormUser, service_id: uuid.UUID) -> Response:
    await credentials.remove_credentials(ctx, user, service_id=service_id)
    return see_other(f"/services/{service_id}/settings?saved=removed#private-registry")
