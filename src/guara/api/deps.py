"""API dependencies as ``Annotated`` aliases: the application context and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from guara.core.accounts import Principal
from guara.http.auth import authenticate_request
from guara.http.deps import ContextDep


async def current_user(request: Request, ctx: ContextDep) -> Principal:
    return await authenticate_request(request, ctx)


CurrentUser = Annotated[Principal, Depends(current_user)]
