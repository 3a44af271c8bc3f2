"""A user's own API tokens: create one (the only time it is shown), list them, revoke one.

Requests authenticate through ``accounts.principal_for_token``, which reads the token's row on every
call: a revoked or expired token fails at once, on every replica sharing the database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from guara.core import validation
from guara.core.accounts import DEFAULT_TOKEN_DAYS, Principal, issue_token, token_expiry
from guara.core.errors import NotFound
from guara.store.models import ApiToken, utcnow

if TYPE_CHECKING:
    from guara.context import AppContext


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``token`` is shown this once and never again."""

    id: uuid.UUID
    name: str
    token: str
    expires_at: datetime | None


@dataclass(frozen=True)
class TokenView:
    """A token as its owner sees it later: never the token itself."""

    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


async def create_token(
    ctx: AppContext, principal: Principal, *, name: str, expires_in_days: int | None = DEFAULT_TOKEN_DAYS
) -> NewToken:
    """A new token for the caller; ``expires_in_days`` None: it never expires."""
    checked = validation.token_name(name)
    expires_at = token_expiry(expires_in_days)

    def work(session: Session) -> NewToken:
        row, token = issue_token(session, user_id=principal.user_id, name=checked, expires_at=expires_at)
        return NewToken(row.id, row.name, token, row.expires_at)

    return await ctx.db.run(work)


async def list_tokens(ctx: AppContext, principal: Principal) -> list[TokenView]:
    """The caller's tokens that still work (not revoked; expired ones too, until revoked), newest first."""

    def work(session: Session) -> list[TokenView]:
        rows = session.scalars(
            select(ApiToken)
            .where(ApiToken.user_id == principal.user_id, ApiToken.revoked_at.is_(None))
            .order_by(ApiToken.created_at.desc(), ApiToken.id)
        )
        return [TokenView(r.id, r.name, r.created_at, r.last_used_at, r.expires_at) for r in rows]

    return await ctx.db.run(work)


async def revoke_token(ctx: AppContext, principal: Principal, *, token_id: uuid.UUID) -> None:
    """Revoke one of the caller's tokens; it answers ``token_revoked`` from the next request on.
    Another user's token, or one revoked already, is NotFound."""

    def work(session: Session) -> None:
        row = session.scalar(
            select(ApiToken).where(
                ApiToken.id == token_id,
                ApiToken.user_id == principal.user_id,
                ApiToken.revoked_at.is_(None),
            )
        )
        if row is None:
            raise NotFound("token not found")
        row.revoked_at = utcnow()

    await ctx.db.run(work)
