"""Users, first-account set-up, signing in and out, API tokens and dashboard sessions."""

from __future__ import annotations

import functools
import hashlib
import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.orm import Session

from guara.core import validation
from guara.core.errors import Conflict, Forbidden, InvalidInput, NotAuthenticated, RateLimited
from guara.store import UniqueViolation, flush
from guara.store.models import ApiToken, SetupClaim, User, WebSession

if TYPE_CHECKING:
    from guara.context import AppContext

_hasher = PasswordHasher()
_VERIFICATIONS = threading.BoundedSemaphore(4)
TOKEN_PREFIX = "gua_"  # noqa: S105  (a public prefix, not a secret)


@dataclass(frozen=True)
class Principal:
    """Who is making a request."""

    user_id: uuid.UUID
    email: str


# The actor of what guara does by itself (e.g. ending a deployment a stopped process left behind).
SYSTEM = Principal(uuid.UUID(int=0), "guara")


@dataclass(frozen=True)
class NewSession:
    """A dashboard session just started: the cookie to set and the session's CSRF token."""

    cookie_value: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class SignedIn:
    """The user behind a dashboard session cookie, and that session's CSRF token."""

    principal: Principal
    csrf_token: str


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so a login takes as long either way (made on first
    use: hashing at import would cost every command a third of a second)."""
    return _hasher.hash("guara-dummy-password")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# The owners of a presented API token and session cookie, built once: every API call and dashboard
# request runs one, and on SQLite building a statement costs more than running it.
_TOKEN_OWNER = (
    select(
        User.id,
        User.email,
        ApiToken.id.label("token_id"),
        ApiToken.revoked_at,
        ApiToken.expires_at,
        ApiToken.last_used_at,
    )
    .join(ApiToken, ApiToken.user_id == User.id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)
_SESSION_OWNER = (
    select(User.id, User.email, WebSession.csrf_token, WebSession.expires_at)
    .join(WebSession, WebSession.user_id == User.id)
    .where(WebSession.token_hash == bindparam("token_hash"))
)


# --- use cases ------------------------------------------------------------------------------------


async def needs_setup(ctx: AppContext) -> bool:
    """True on an empty install: the set-up page may create the first account."""
    return await ctx.db.run(_needs_setup)


async def create_user(ctx: AppContext, *, email: str, password: str) -> Principal:
    """Create a user. While set-up is pending, the new user also completes it (CLI-created users too)."""
    return await ctx.db.run(lambda session: _create_user(session, email=email, password=password))


async def set_up(ctx: AppContext, *, email: str, password: str) -> NewSession:
    """Create the first account and sign it in; only ever once, even when two browsers race."""

    def work(session: Session) -> NewSession:
        if _needs_setup(session):
            principal = _create_user(session, email=email, password=password, first=True)
            return _start_session(session, principal=principal, max_age_s=ctx.settings.session_max_age_s)
        raise Conflict("this installation already has an account; sign in instead", code="setup_done")

    return await ctx.db.run(work)


async def sign_in(ctx: AppContext, *, email: str, password: str, client: str) -> NewSession:
    """Check a password and start a dashboard session. Attempts are throttled per account and client,
    so guessing is bounded and someone else's failed attempts cannot lock the owner out elsewhere."""
    retry_after = await ctx.limiters.sign_in.hit_async(f"{email.strip().lower()}|{client}")
    if retry_after is not None:
        raise RateLimited(
            f"Too many sign-in attempts for this account; try again in {retry_after} seconds.",
            retry_after=retry_after,
        )

    def work(session: Session) -> NewSession:
        principal = _authenticate(session, email=email, password=password)
        return _start_session(session, principal=principal, max_age_s=ctx.settings.session_max_age_s)

    return await ctx.db.run(work)


async def sign_out(ctx: AppContext, *, cookie_value: str) -> None:
    def work(session: Session) -> None:
        session.execute(delete(WebSession).where(WebSession.token_hash == _digest(cookie_value)))

    await ctx.db.run(work)


async def signed_in(ctx: AppContext, *, cookie_value: str) -> SignedIn:
    """The user of a dashboard session cookie; NotAuthenticated when unknown or expired."""

    def work(session: Session) -> SignedIn:
        row = session.execute(_SESSION_OWNER, {"token_hash": _digest(cookie_value)}).first()
        if row is None or row.expires_at <= datetime.now(UTC):
            raise NotAuthenticated("please sign in")
        return SignedIn(Principal(row.id, row.email), row.csrf_token)

    return await ctx.db.run(work)


@dataclass(frozen=True)
class AccountView:
    id: uuid.UUID
    email: str
    is_admin: bool


async def get_account(ctx: AppContext, principal: Principal) -> AccountView:
    def work(session: Session) -> AccountView:
        user = session.get(User, principal.user_id)
        if user is None:
            raise NotAuthenticated("please sign in")
        return AccountView(user.id, user.email, user.is_admin)

    return await ctx.db.run(work)


async def create_account(ctx: AppContext, principal: Principal, *, email: str, password: str) -> AccountView:
    """A further account, made by the admin (who tells its owner the password, or sends an invitation
    link instead)."""

    def work(session: Session) -> AccountView:
        require_admin(session, principal)
        created = _create_user(session, email=email, password=password)
        return AccountView(created.user_id, created.email, False)

    return await ctx.db.run(work)


async def change_password(
    ctx: AppContext, principal: Principal, *, current: str, new: str, keep_cookie: str | None = None
) -> int:
    """Set a new password after checking the current one; every other dashboard session of the account
    ends (``keep_cookie``: the session making the change stays). How many sessions ended."""
    retry_after = await ctx.limiters.sign_in.hit_async(f"{principal.email}|password-change")
    if retry_after is not None:
        raise RateLimited(f"Too many attempts; try again in {retry_after} seconds.", retry_after=retry_after)
    checked = validation.password(new)

    def work(session: Session) -> int:
        try:
            _authenticate(session, email=principal.email, password=current)
        except NotAuthenticated:
            raise InvalidInput(
                "the current password is not right", code="wrong_password", field="current_password"
            ) from None
        user = session.get(User, principal.user_id)
        if user is None:
            raise NotAuthenticated("please sign in")
        user.password_hash = _hasher.hash(checked)
        others = delete(WebSession).where(WebSession.user_id == principal.user_id)
        if keep_cookie:
            others = others.where(WebSession.token_hash != _digest(keep_cookie))
        return session.execute(others).rowcount or 0  # type: ignore[attr-defined]

    return await ctx.db.run(work)


async def sign_out_everywhere(ctx: AppContext, principal: Principal) -> int:
    """End every dashboard session of the account, this one too (API tokens are revoked one by one
    on the tokens page). How many ended."""

    def work(session: Session) -> int:
        ended = session.execute(delete(WebSession).where(WebSession.user_id == principal.user_id))
        return ended.rowcount or 0  # type: ignore[attr-defined]

    return await ctx.db.run(work)


def require_admin(session: Session, principal: Principal) -> None:
    user = session.get(User, principal.user_id)
    if user is None or not user.is_admin:
        raise Forbidden("only the admin (the installation's first account) may do this")


DEFAULT_TOKEN_DAYS = 90
MAX_TOKEN_DAYS = 3650
# How stale a token's "last used" may get before a request writes it again (a write per request would
# cost every API call a database write).
LAST_USED_PRECISION = timedelta(minutes=1)


async def create_api_token(
    ctx: AppContext, *, email: str, name: str = "cli", expires_in_days: int | None = DEFAULT_TOKEN_DAYS
) -> str:
    """A new API token for the user with this email (shown once; only its hash is stored).
    ``expires_in_days`` None: it never expires."""
    expires_at = token_expiry(expires_in_days)

    def work(session: Session) -> str:
        address = email.strip().lower()
        user = session.scalar(select(User).where(User.email == address))
        if user is None:
            raise NotAuthenticated(f"no user with email {address}")
        return issue_token(session, user_id=user.id, name=name, expires_at=expires_at)[1]

    return await ctx.db.run(work)


async def principal_for_token(ctx: AppContext, token: str) -> Principal:
    """The user of an API token, read from the database on every call, so a revocation holds at once
    on every process sharing it. Expired and revoked tokens say so (``token_expired``,
    ``token_revoked``)."""

    def work(session: Session) -> Principal:
        row = session.execute(_TOKEN_OWNER, {"token_hash": _digest(token)}).first()
        if row is None:
            raise NotAuthenticated("invalid API token")
        now = datetime.now(UTC)
        if row.revoked_at is not None:
            raise NotAuthenticated("this API token was revoked", code="token_revoked")
        if row.expires_at is not None and row.expires_at <= now:
            raise NotAuthenticated("this API token has expired; create a new one", code="token_expired")
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_PRECISION:
            session.execute(update(ApiToken).where(ApiToken.id == row.token_id).values(last_used_at=now))
        return Principal(row.id, row.email)

    return await ctx.db.run(work)


def token_expiry(days: int | None) -> datetime | None:
    """When a token made now for ``days`` days expires; None (never) for None."""
    if days is None:
        return None
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise InvalidInput(
            f"expires_in_days must be between 1 and {MAX_TOKEN_DAYS} (or null: never)",
            field="expires_in_days",
        )
    return datetime.now(UTC) + timedelta(days=days)


# --- steps, in the caller's transaction -------------------------------------------------------------


def issue_token(
    session: Session, *, user_id: uuid.UUID, name: str, expires_at: datetime | None
) -> tuple[ApiToken, str]:
    """A new token of ``user_id``: its row and the token itself (only its hash is stored)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user_id, token_hash=_digest(token), name=name[:100], expires_at=expires_at)
    session.add(row)
    flush(session)
    return row, token


def _needs_setup(session: Session) -> bool:
    return not session.scalar(select(exists().where(SetupClaim.id == 1)))


def _create_user(session: Session, *, email: str, password: str, first: bool = False) -> Principal:
    address = validation.email(email)
    if session.scalar(select(User.id).where(User.email == address)) is not None:
        raise Conflict(f"a user with email {address} already exists")
    user = User(email=address, password_hash=_hasher.hash(validation.password(password)))
    # The account that sets the installation up is its admin.
    user.is_admin = first or _needs_setup(session)
    session.add(user)
    try:
        flush(session)
    except UniqueViolation:
        raise Conflict(f"a user with email {address} already exists") from None
    if first or _needs_setup(session):
        # The one-row claim's primary key makes "create the first account" happen once.
        session.add(SetupClaim(id=1, user_id=user.id))
        try:
            flush(session)
        except UniqueViolation:
            raise Conflict(
                "this installation already has an account; sign in instead", code="setup_done"
            ) from None
    return Principal(user.id, user.email)


def start_session(session: Session, *, principal: Principal, max_age_s: int) -> NewSession:
    """A dashboard session for ``principal`` in the caller's transaction (invitations sign in so)."""
    return _start_session(session, principal=principal, max_age_s=max_age_s)


def create_user_in(session: Session, *, email: str, password: str) -> Principal:
    """A new (not admin) account in the caller's transaction."""
    return _create_user(session, email=email, password=password)


def _authenticate(session: Session, *, email: str, password: str) -> Principal:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    try:
        # Each verification takes ~64 MiB: a few at a time, however many requests arrive at once.
        with _VERIFICATIONS:
            _hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        raise NotAuthenticated("wrong email or password") from None
    if user is None:
        raise NotAuthenticated("wrong email or password")
    return Principal(user.id, user.email)


def _start_session(session: Session, *, principal: Principal, max_age_s: int) -> NewSession:
    cookie_value = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + timedelta(seconds=max_age_s)
    session.add(
        WebSession(
            user_id=principal.user_id,
            token_hash=_digest(cookie_value),
            csrf_token=csrf_token,
            expires_at=expires_at,
        )
    )
    return NewSession(cookie_value, csrf_token, expires_at)
