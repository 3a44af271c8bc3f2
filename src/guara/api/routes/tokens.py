"""The caller's API tokens: create (the token is shown once), list (never the token), revoke."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from guara.api.deps import CurrentUser
from guara.api.schemas import TokenCreate, TokenCreated, TokenPublic, error_responses
from guara.core import tokens
from guara.http.deps import ContextDep

router = APIRouter(prefix="/tokens", tags=["tokens"], responses=error_responses(401, 422))


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 413))
async def create_token(body: TokenCreate, user: CurrentUser, ctx: ContextDep) -> TokenCreated:
    """A new API token of the caller. ``expires_in_days`` left out: 90 days; ``null``: never."""
    view = await tokens.create_token(ctx, user, name=body.name, expires_in_days=body.expires_in_days)
    return TokenCreated.model_validate(view)


@router.get("")
async def list_tokens(user: CurrentUser, ctx: ContextDep) -> list[TokenPublic]:
    return [TokenPublic.model_validate(view) for view in await tokens.list_tokens(ctx, user)]


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404))
async def revoke_token(token_id: uuid.UUID, user: CurrentUser, ctx: ContextDep) -> Response:
    """Revoke a token: from the next request on, on every replica, it answers 401 ``token_revoked``."""
    await tokens.revoke_token(ctx, user, token_id=token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
