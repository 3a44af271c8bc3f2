"""Who is calling: an API token (``Authorization: Bearer``), or the dashboard's session cookie, which
needs a CSRF token on every state-changing request (the ``X-CSRF-Token`` header or a form field)."""

from __future__ import annotations

import hmac

from fastapi import Request

from guara import logs
from guara.context import AppContext
from guara.core import accounts
from guara.core.accounts import Principal, SignedIn
from guara.core.errors import NotAuthenticated

SESSION_COOKIE = "guara_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def authenticate_request(request: Request, ctx: AppContext) -> Principal:
    """Bearer token, or the session cookie plus the CSRF header on state-changing requests."""
    caller = await _caller(request, ctx)
    if isinstance(caller, SignedIn):
        if request.method not in SAFE_METHODS:
            require_token(request.headers.get(CSRF_HEADER, ""), caller.csrf_token)
        return caller.principal
    return caller


async def identify(request: Request, ctx: AppContext) -> bool:
    """Whether the request comes from a known caller (a valid API token or session cookie; CSRF is the
    route's business). The caller is remembered on the request for the route's own check."""
    try:
        await _caller(request, ctx)
    except NotAuthenticated:
        return False
    return True


async def session_of(request: Request, ctx: AppContext) -> SignedIn | None:
    """The dashboard session of this request's cookie; None without a valid one."""
    cached = getattr(request.state, "caller", None)
    if isinstance(cached, SignedIn):
        return cached
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        signed_in = await accounts.signed_in(ctx, cookie_value=cookie)
    except NotAuthenticated:
        return None
    request.state.caller = signed_in
    return signed_in


async def _caller(request: Request, ctx: AppContext) -> Principal | SignedIn:
    cached: Principal | SignedIn | None = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    header = request.headers.get("authorization", "")
    caller: Principal | SignedIn | None
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("use 'Authorization: Bearer <API token>'")
        caller = await accounts.principal_for_token(ctx, token.strip())
    else:
        caller = await session_of(request, ctx)
        if caller is None:
            raise NotAuthenticated("authentication required")
    request.state.caller = caller
    principal = caller.principal if isinstance(caller, SignedIn) else caller
    logs.user_id.set(str(principal.user_id))  # for this request's log lines (reset by RequestTelemetry)
    return caller


def require_token(sent: str, expected: str, *, message: str = "missing or wrong CSRF token") -> None:
    """The CSRF token a request sent must equal the expected one (constant-time); an empty
    expectation always fails."""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise NotAuthenticated(message, code="csrf_failed")
