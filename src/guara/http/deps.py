"""Request dependencies both adapters use, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from guara.context import AppContext


# async: no worker-thread hop for reading app state (sync dependencies run in the thread pool).
async def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.context
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]
