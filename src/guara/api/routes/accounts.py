"""Accounts: who am I, the admin's new accounts and invitation links, changing a password, signing
out everywhere."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from guara.api.deps import CurrentUser
from guara.api.schemas import (
    AccountCreate,
    AccountPublic,
    InvitationCreate,
    InvitationCreated,
    PasswordChange,
    error_responses,
)
from guara.core import accounts, invitations
from guara.http.auth import SESSION_COOKIE
from guara.http.deps import ContextDep

router = APIRouter(tags=["accounts"], responses=error_responses(401, 422))


@router.get("/account")
async def get_account(user: CurrentUser, ctx: ContextDep) -> AccountPublic:
    return AccountPublic.model_validate(await accounts.get_account(ctx, user))


@router.post("/accounts", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 403, 409, 413))
async def create_account(body: AccountCreate, user: CurrentUser, ctx: ContextDep) -> AccountPublic:
    """A further account (the admin only)."""
    view = await accounts.create_account(
        ctx, user, email=body.email, password=body.password.get_secret_value()
    )
    return AccountPublic.model_validate(view)


@router.post("/invitations", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 403, 413))
async def create_invitation(
    request: Request, body: InvitationCreate, user: CurrentUser, ctx: ContextDep
) -> InvitationCreated:
    """An invitation link (the admin only): whoever opens it before it expires creates one account."""
    made = await invitations.create_invitation(
        ctx, user, email=body.email, expires_in_hours=body.expires_in_hours
    )
    url = str(request.base_url).rstrip("/") + made.path
    return InvitationCreated(id=made.id, email=made.email, expires_at=made.expires_at, url=url)


@router.put(
    "/account/password", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(400, 413, 429)
)
async def change_password(
    request: Request, body: PasswordChange, user: CurrentUser, ctx: ContextDep
) -> Response:
    """Change your password; every other dashboard session ends (a wrong current password: 422
    ``wrong_password``)."""
    await accounts.change_password(
        ctx,
        user,
        current=body.current_password.get_secret_value(),
        new=body.new_password.get_secret_value(),
        keep_cookie=request.cookies.get(SESSION_COOKIE),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/account/sign-out-everywhere", status_code=status.HTTP_204_NO_CONTENT)
async def sign_out_everywhere(user: CurrentUser, ctx: ContextDep) -> Response:
    """End every dashboard session of your account (API tokens stay: revoke them one by one)."""
    await accounts.sign_out_everywhere(ctx, user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
