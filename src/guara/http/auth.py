"""Who is calling: an API token (``Authorization: Bearer``), or the dashboard's session cookie, which
needs a CSRF token on every state-changing request (the ``X-CSRF-Token`` header or a form field)."""

from __future__ import annotations

import hmac

from fastapi import Request

from guara.context import AppContext
from guara.core import accounts
from guara.core.accounts import Principal, SignedIn
from guara.core.errors import NotAuthenticated

SESSION_COOKIE = "guara_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def authenticate_request(request: Request, ctx: AppContext) -> Principal:
    """Bearer token, or the session cookie plus the CSRF header on state-changing requests."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("use 'Authorization: Bearer <API token>'")
        return await accounts.principal_for_token(ctx, token.strip())
    signed_in = await session_of(request, ctx)
    if signed_in is None:
        raise NotAuthenticated("authentication required")
    if request.method not in SAFE_METHODS:
        require_token(request.headers.get(CSRF_HEADER, ""), signed_in.csrf_token)
    return signed_in.principal


async def session_of(request: Request, ctx: AppContext) -> SignedIn | None:
    """The dashboard session of this request's cookie; None without a valid one."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return await accounts.signed_in(ctx, cookie_value=cookie)
    except NotAuthenticated:
        return None


def require_token(sent: str, expected: str, *, message: str = "missing or wrong CSRF token") -> None:
    """The CSRF token a request sent must equal the expected one (constant-time); an empty
    expectation always fails."""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise NotAuthenticated(message, code="csrf_failed")
