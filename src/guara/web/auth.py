"""Dashboard sign-in state: the session cookie, CSRF checks, the signed-in user."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import Response

from guara.api.deps import SESSION_COOKIE, PlatformDep
from guara.core import accounts
from guara.core.accounts import NewSession, Principal
from guara.core.errors import NotAuthenticated

FORM_CSRF_COOKIE = "guara_form_csrf"


class LoginRequired(Exception):
    """Raised by page dependencies; answered with a redirect to the sign-in page."""


def web_user(request: Request, platform: PlatformDep) -> Principal:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise LoginRequired
    try:
        with platform.db.session() as session:
            principal, csrf = accounts.principal_for_session(session, cookie)
    except NotAuthenticated:
        raise LoginRequired from None
    request.state.user = principal
    request.state.csrf_token = csrf
    return principal


WebUser = Annotated[Principal, Depends(web_user)]


def _require_token(sent: str, expected: str) -> None:
    """The token a form sent must equal the expected one (constant-time); an empty expectation fails."""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise NotAuthenticated("the form expired; reload the page and try again", code="csrf_failed")


def check_csrf(request: Request, sent: str) -> None:
    _require_token(sent, getattr(request.state, "csrf_token", "") or "")


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
    _require_token(sent, request.cookies.get(FORM_CSRF_COOKIE, ""))


def _secure(request: Request) -> bool:
    configured: bool | None = request.app.state.platform.settings.cookie_secure
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
