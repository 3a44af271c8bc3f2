"""Invitation links: the admin makes one (optionally for one email) that lets one person create an
account until it expires; accepting it signs the new account in. Only the link's hash is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from guara.core import validation
from guara.core.accounts import NewSession, Principal, create_user_in, require_admin, start_session
from guara.core.errors import Conflict, InvalidInput, NotFound
from guara.store import flush
from guara.store.models import Invitation

if TYPE_CHECKING:
    from guara.context import AppContext

DEFAULT_INVITATION_HOURS = 72
MAX_INVITATION_HOURS = 24 * 30
INVITE_PATH = "/invite/"


@dataclass(frozen=True)
class NewInvitation:
    """An invitation just made: ``token`` (in ``path``) is shown this once."""

    id: uuid.UUID
    token: str
    email: str | None
    expires_at: datetime

    @property
    def path(self) -> str:
        return INVITE_PATH + self.token


@dataclass(frozen=True)
class InvitationView:
    email: str | None
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_invitation(
    ctx: AppContext,
    principal: Principal,
    *,
    email: str | None = None,
    expires_in_hours: int = DEFAULT_INVITATION_HOURS,
) -> NewInvitation:
    """A new invitation link (admin only); with ``email``, only that address may accept it."""
    if not 1 <= expires_in_hours <= MAX_INVITATION_HOURS:
        raise InvalidInput(
            f"expires_in_hours must be between 1 and {MAX_INVITATION_HOURS}", field="expires_in_hours"
        )
    address = validation.email(email) if email else None
    expires_at = datetime.now(UTC) + timedelta(hours=expires_in_hours)

    def work(session: Session) -> NewInvitation:
        require_admin(session, principal)
        token = secrets.token_urlsafe(32)
        row = Invitation(
            token_hash=_digest(token), email=address, created_by=principal.user_id, expires_at=expires_at
        )
        session.add(row)
        flush(session)
        return NewInvitation(row.id, token, address, expires_at)

    return await ctx.db.run(work)


async def check_invitation(ctx: AppContext, *, token: str) -> InvitationView:
    """What an invitation link allows; NotFound ``invitation_invalid`` for an unknown, used or
    expired one (``invitation_expired`` says which)."""
    return await ctx.db.run(lambda session: _usable(session, token))


async def accept_invitation(ctx: AppContext, *, token: str, email: str, password: str) -> NewSession:
    """Create the account an invitation allows and sign it in; the link works once."""

    def work(session: Session) -> NewSession:
        invitation = _usable(session, token)
        address = validation.email(email)
        if invitation.email is not None and address != invitation.email:
            raise InvalidInput(
                f"this invitation is for {invitation.email}", code="wrong_email", field="email"
            )
        claimed = session.execute(
            update(Invitation)
            .where(Invitation.token_hash == _digest(token), Invitation.used_at.is_(None))
            .values(used_at=datetime.now(UTC))
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise _invalid()
        principal = create_user_in(session, email=address, password=password)
        return start_session(session, principal=principal, max_age_s=ctx.settings.session_max_age_s)

    return await ctx.db.run(work)


def _invalid() -> NotFound:
    return NotFound("this invitation link is not valid (or was used already)", code="invitation_invalid")


def _usable(session: Session, token: str) -> InvitationView:
    row = session.scalar(select(Invitation).where(Invitation.token_hash == _digest(token)))
    if row is None or row.used_at is not None:
        raise _invalid()
    if row.expires_at <= datetime.now(UTC):
        raise Conflict("this invitation link has expired; ask for a new one", code="invitation_expired")
    return InvitationView(row.email, row.expires_at)
