"""Request dependencies as ``Annotated`` aliases: the platform, a unit of work, the caller."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from guara.core import accounts
from guara.core.accounts import Principal
from guara.core.errors import NotAuthenticated
from guara.core.platform import Platform

SESSION_COOKIE = "guara_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# async: no worker-thread hop for reading app state (sync dependencies run in the thread pool).
async def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


def get_session(platform: PlatformDep) -> Iterator[Session]:
    with platform.db.session() as session:
        yield session


# scope="function": the unit of work commits before the response is sent, so a failed commit is an
# error answer, never a success the database does not hold.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def authenticate_request(request: Request, platform: Platform) -> Principal:
    """Bearer token, or the dashboard cookie plus a CSRF token on state-changing requests."""
    header = request.headers.get("authorization", "")
    with platform.db.session() as session:
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise NotAuthenticated("use 'Authorization: Bearer <API token>'")
            return accounts.principal_for_token(session, token.strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise NotAuthenticated("authentication required")
        principal, csrf = accounts.principal_for_session(session, cookie)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), csrf.encode()):
            raise NotAuthenticated("missing or wrong CSRF token", code="csrf_failed")
    return principal


def current_user(request: Request, platform: PlatformDep) -> Principal:
    return authenticate_request(request, platform)


CurrentUser = Annotated[Principal, Depends(current_user)]
