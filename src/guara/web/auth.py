"""Dashboard sign-in state: the signed-in user of a page, CSRF on forms, and the cookies."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import Response

from guara.core.accounts import NewSession, Principal
from guara.http.auth import SESSION_COOKIE, require_token, session_of
from guara.http.deps import ContextDep

FORM_CSRF_COOKIE = "guara_form_csrf"
EXPIRED_FORM = "the form expired; reload the page and try again"


class LoginRequired(Exception):
    """Raised by page dependencies; answered with a redirect to the sign-in page."""


async def web_user(request: Request, ctx: ContextDep) -> Principal:
    signed_in = await session_of(request, ctx)
    if signed_in is None:
        raise LoginRequired
    request.state.user = signed_in.principal
    request.state.csrf_token = signed_in.csrf_token
    return signed_in.principal


WebUser = Annotated[Principal, Depends(web_user)]


def check_csrf(request: Request, sent: str) -> None:
    require_token(sent, getattr(request.state, "csrf_token", "") or "", message=EXPIRED_FORM)


def csrf_checked_user(
    request: Request, user: WebUser, csrf_token: Annotated[str, Form(max_length=200)] = ""
) -> Principal:
    check_csrf(request, csrf_token)
    return user


FormUser = Annotated[Principal, Depends(csrf_checked_user)]


def form_csrf_token(request: Request) -> str:
    """A double-submit token for forms shown before there is a session (sign-in, set-up)."""
    existing = request.cookies.get(FORM_CSRF_COOKIE)
    return existing if existing and len(existing) <= 64 else secrets.token_urlsafe(24)


def check_form_csrf(request: Request, sent: str) -> None:
    require_token(sent, request.cookies.get(FORM_CSRF_COOKIE, ""), message=EXPIRED_FORM)


def _secure(request: Request) -> bool:
    configured: bool | None = request.app.state.context.settings.cookie_secure
    return request.url.scheme == "https" if configured is None else configured


def set_form_csrf_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(FORM_CSRF_COOKIE, token, httponly=True, samesite="lax", secure=_secure(request))


def set_session_cookie(request: Request, response: Response, new: NewSession, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        new.cookie_value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
