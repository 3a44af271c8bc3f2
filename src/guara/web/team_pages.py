"""Dashboard pages around people: the account (API tokens, password, sessions; the admin's accounts
and invitation links), accepting an invitation, project members, and deleting a service or project
(confirmed by typing its name). Each handler calls the use cases the API calls."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from guara.core import accounts, deletion, invitations, members, projects, services, tokens
from guara.core.accounts import Principal
from guara.core.errors import GuaraError, InvalidInput
from guara.core.roles import Action, Role, allows
from guara.http.auth import SESSION_COOKIE
from guara.http.deps import ContextDep
from guara.http.errors import status_for
from guara.web.auth import (
    FormUser,
    WebUser,
    check_form_csrf,
    clear_session_cookie,
    form_csrf_token,
    set_form_csrf_cookie,
    set_session_cookie,
)
from guara.web.forms import FormText
from guara.web.presenters import utc_text
from guara.web.views import render, see_other

router = APIRouter(include_in_schema=False)


# --- account ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRow:
    id: str
    name: str
    created: str
    last_used: str
    expires: str


@dataclass(frozen=True)
class InvitationShown:
    url: str
    email: str | None
    expires: str


async def _account_page(
    request: Request, ctx: ContextDep, user: Principal, *, status_code: int = 200, **extra: Any
) -> Response:
    account = await accounts.get_account(ctx, user)
    rows = [
        TokenRow(
            id=str(t.id),
            name=t.name,
            created=utc_text(t.created_at),
            last_used=utc_text(t.last_used_at) if t.last_used_at else "never",
            expires=utc_text(t.expires_at) if t.expires_at else "never",
        )
        for t in await tokens.list_tokens(ctx, user)
    ]
    return render(request, "account.html", status_code=status_code, account=account, tokens=rows, **extra)


@router.get("/account")
async def account_page(request: Request, ctx: ContextDep, user: WebUser, notice: str = "") -> Response:
    known = {"password": "Your password was changed; your other sessions ended.", "revoked": "Token revoked."}
    return await _account_page(request, ctx, user, notice=known.get(notice, ""))


@router.post("/account/tokens")
async def create_token_form(
    request: Request, ctx: ContextDep, user: FormUser, name: FormText, expires_in_days: FormText = "90"
) -> Response:
    try:
        days = None if expires_in_days == "never" else int(expires_in_days)
        new = await tokens.create_token(ctx, user, name=name, expires_in_days=days)
    except ValueError:
        return await _account_page(request, ctx, user, status_code=422, error="choose when the token expires")
    except InvalidInput as exc:
        return await _account_page(request, ctx, user, status_code=status_for(exc), error=exc.message)
    return await _account_page(request, ctx, user, new_token=new)


@router.post("/account/tokens/{token_id}/revoke")
async def revoke_token_form(ctx: ContextDep, user: FormUser, token_id: uuid.UUID) -> Response:
    await tokens.revoke_token(ctx, user, token_id=token_id)
    return see_other("/account?notice=revoked")


@router.post("/account/password")
async def change_password_form(
    request: Request, ctx: ContextDep, user: FormUser, current_password: FormText, new_password: FormText
) -> Response:
    try:
        await accounts.change_password(
            ctx,
            user,
            current=current_password,
            new=new_password,
            keep_cookie=request.cookies.get(SESSION_COOKIE),
        )
    except InvalidInput as exc:
        return await _account_page(request, ctx, user, status_code=status_for(exc), error=exc.message)
    return see_other("/account?notice=password")


@router.post("/account/sign-out-everywhere")
async def sign_out_everywhere_form(ctx: ContextDep, user: FormUser) -> Response:
    await accounts.sign_out_everywhere(ctx, user)
    response = see_other("/login")
    clear_session_cookie(response)
    return response


@router.post("/accounts")
async def create_account_form(
    request: Request, ctx: ContextDep, user: FormUser, email: FormText, password: FormText
) -> Response:
    try:
        made = await accounts.create_account(ctx, user, email=email, password=password)
    except GuaraError as exc:
        if exc.code in ("not_found", "forbidden"):
            raise
        return await _account_page(request, ctx, user, status_code=status_for(exc), error=exc.message)
    return await _account_page(request, ctx, user, notice=f"Account {made.email} created.")


@router.post("/account/invitations")
async def create_invitation_form(
    request: Request, ctx: ContextDep, user: FormUser, email: FormText = ""
) -> Response:
    try:
        made = await invitations.create_invitation(ctx, user, email=email.strip() or None)
    except InvalidInput as exc:
        return await _account_page(request, ctx, user, status_code=status_for(exc), error=exc.message)
    shown = InvitationShown(
        str(request.base_url).rstrip("/") + made.path, made.email, utc_text(made.expires_at)
    )
    return await _account_page(request, ctx, user, invitation=shown)


# --- invitations ------------------------------------------------------------------------------------


def _invite_page(request: Request, token: str, *, status_code: int = 200, **context: Any) -> Response:
    form_csrf = form_csrf_token(request)
    response = render(
        request, "invite.html", status_code=status_code, token=token, form_csrf=form_csrf, **context
    )
    set_form_csrf_cookie(request, response, form_csrf)
    return response


@router.get("/invite/{token}")
async def invite_page(request: Request, ctx: ContextDep, token: str) -> Response:
    try:
        invitation = await invitations.check_invitation(ctx, token=token)
    except GuaraError as exc:
        return _invite_page(request, token, status_code=status_for(exc), usable=False, error=exc.message)
    return _invite_page(
        request, token, usable=True, email=invitation.email, locked=invitation.email is not None
    )


@router.post("/invite/{token}")
async def accept_invite(
    request: Request,
    ctx: ContextDep,
    token: str,
    email: FormText,
    password: FormText,
    csrf_token: FormText = "",
) -> Response:
    try:
        check_form_csrf(request, csrf_token)
        new = await invitations.accept_invitation(ctx, token=token, email=email, password=password)
    except GuaraError as exc:
        usable = isinstance(exc, InvalidInput)
        return _invite_page(
            request, token, status_code=status_for(exc), usable=usable, error=exc.message, email=email
        )
    response = see_other("/projects")
    set_session_cookie(request, response, new, ctx.settings.session_max_age_s)
    return response


# --- members ----------------------------------------------------------------------------------------


async def _members_page(
    request: Request,
    ctx: ContextDep,
    user: Principal,
    project_id: uuid.UUID,
    *,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    project = await projects.get_project(ctx, user, project_id=project_id)
    return render(
        request,
        "members.html",
        status_code=status_code,
        project=project,
        members=await members.list_members(ctx, user, project_id=project_id),
        manage=allows(project.role, Action.MEMBERS_MANAGE),
        me=user.user_id,
        roles=[role.value for role in Role],
        **extra,
    )


@router.get("/projects/{project_id}/members")
async def members_page(request: Request, ctx: ContextDep, user: WebUser, project_id: uuid.UUID) -> Response:
    return await _members_page(request, ctx, user, project_id)


@router.post("/projects/{project_id}/members")
async def add_member_form(
    request: Request, ctx: ContextDep, user: FormUser, project_id: uuid.UUID, email: FormText, role: FormText
) -> Response:
    try:
        added = await members.add_member(ctx, user, project_id=project_id, email=email, role=role)
    except GuaraError as exc:
        if exc.code in ("not_found", "forbidden"):
            raise
        return await _members_page(
            request, ctx, user, project_id, status_code=status_for(exc), error=exc.message, email=email
        )
    return await _members_page(request, ctx, user, project_id, notice=f"Added {added.email} as {added.role}.")


@router.post("/projects/{project_id}/members/{user_id}/role")
async def change_role_form(
    request: Request,
    ctx: ContextDep,
    user: FormUser,
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    role: FormText,
) -> Response:
    try:
        await members.change_role(ctx, user, project_id=project_id, user_id=user_id, role=role)
    except GuaraError as exc:
        if exc.code in ("not_found", "forbidden"):
            raise
        return await _members_page(
            request, ctx, user, project_id, status_code=status_for(exc), error=exc.message
        )
    return see_other(f"/projects/{project_id}/members")


@router.post("/projects/{project_id}/members/{user_id}/remove")
async def remove_member_form(
    request: Request, ctx: ContextDep, user: FormUser, project_id: uuid.UUID, user_id: uuid.UUID
) -> Response:
    try:
        await members.remove_member(ctx, user, project_id=project_id, user_id=user_id)
    except GuaraError as exc:
        if exc.code in ("not_found", "forbidden"):
            raise
        return await _members_page(
            request, ctx, user, project_id, status_code=status_for(exc), error=exc.message
        )
    return see_other("/projects" if user_id == user.user_id else f"/projects/{project_id}/members")


# --- deletion ---------------------------------------------------------------------------------------

SERVICE_CONSEQUENCES = (
    "What runs for it stops: its containers, or its Kubernetes Deployment and pull Secret.",
    "Its stored registry credentials are destroyed.",
    "Its audit entries stay, and owners can still read its deployments.",
)
PROJECT_CONSEQUENCES = ("Nobody can open the project afterwards; its audit entries stay in the database.",)


@router.get("/services/{service_id}/delete")
async def delete_service_page(
    request: Request, ctx: ContextDep, user: WebUser, service_id: uuid.UUID
) -> Response:
    service = await services.get_service(ctx, user, service_id=service_id, action=Action.SERVICE_DELETE)
    return _confirm_service(request, service.id, service.name)


def _confirm_service(request: Request, service_id: uuid.UUID, name: str, **extra: Any) -> Response:
    return render(
        request,
        "confirm_delete.html",
        kind="service",
        name=name,
        consequences=SERVICE_CONSEQUENCES,
        action=f"/services/{service_id}/delete",
        cancel_url=f"/services/{service_id}/settings",
        cascade_offer=0,
        **extra,
    )


@router.post("/services/{service_id}/delete")
async def delete_service_form(
    request: Request, ctx: ContextDep, user: FormUser, service_id: uuid.UUID, confirm: FormText = ""
) -> Response:
    service = await services.get_service(ctx, user, service_id=service_id)
    if confirm != service.name:
        return _confirm_service(
            request, service.id, service.name, status_code=422, error="type the service's name exactly"
        )
    try:
        await deletion.delete_service(ctx, user, service_id=service_id)
    except GuaraError as exc:
        if exc.code in ("not_found", "forbidden"):
            raise
        return _confirm_service(
            request, service.id, service.name, status_code=status_for(exc), error=exc.message
        )
    return see_other(f"/projects/{service.project_id}")


async def _confirm_project(
    request: Request, ctx: ContextDep, user: Principal, project_id: uuid.UUID, **extra: Any
) -> Response:
    project = await projects.get_project(ctx, user, project_id=project_id, action=Action.PROJECT_DELETE)
    count = len(await services.list_services(ctx, user, project_id=project_id))
    return render(
        request,
        "confirm_delete.html",
        kind="project",
        name=project.name,
        consequences=PROJECT_CONSEQUENCES + ((SERVICE_CONSEQUENCES[2],) if count else ()),
        action=f"/projects/{project_id}/delete",
        cancel_url=f"/projects/{project_id}",
        cascade_offer=count,
        **extra,
    )


@router.get("/projects/{project_id}/delete")
async def delete_project_page(
    request: Request, ctx: ContextDep, user: WebUser, project_id: uuid.UUID
) -> Response:
    return await _confirm_project(request, ctx, user, project_id)


@router.post("/projects/{project_id}/delete")
async def delete_project_form(
    request: Request,
    ctx: ContextDep,
    user: FormUser,
    project_id: uuid.UUID,
    confirm: FormText = "",
    cascade: FormText = "",
) -> Response:
    project = await projects.get_project(ctx, user, project_id=project_id)
    if confirm != project.name:
        return await _confirm_project(
            request, ctx, user, project_id, status_code=422, error="type the project's name exactly"
        )
    try:
        await deletion.delete_project(ctx, user, project_id=project_id, cascade=cascade == "true")
    except GuaraError as exc:
        if exc.code in ("not_found", "forbidden"):
            raise
        return await _confirm_project(
            request, ctx, user, project_id, status_code=status_for(exc), error=exc.message
        )
    return see_other("/projects")
