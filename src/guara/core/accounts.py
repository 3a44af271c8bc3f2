"""Users, first-account set-up, API tokens and dashboard sessions."""

from __future__ import annotations

import hashlib
import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from guara.core import validation
from guara.core.errors import Conflict, NotAuthenticated, RateLimited
from guara.ratelimit import PreflightLimiter
from guara.store.db import UniqueViolation, flush_unique
from guara.store.models import ApiToken, SetupClaim, User, WebSession

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a login takes as long either way.
_DUMMY_HASH = _hasher.hash("guara-dummy-password")
_VERIFICATIONS = threading.BoundedSemaphore(4)
TOKEN_PREFIX = "gua_"  # noqa: S105  (a public prefix, not a secret)


@dataclass(frozen=True)
class Principal:
    """Who is making a request."""

    user_id: uuid.UUID
    email: str


@dataclass(frozen=True)
class NewSession:
    cookie_value: str
    csrf_token: str
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def needs_setup(session: Session) -> bool:
    return not session.scalar(select(exists().where(SetupClaim.id == 1)))


def create_user(session: Session, *, email: str, password: str, first: bool = False) -> Principal:
    """Create a user. The first user (``first``, or any user while set-up is pending) claims set-up."""
    address = validation.email(email)
    if session.scalar(select(User.id).where(User.email == address)) is not None:
        raise Conflict(f"a user with email {address} already exists")
    user = User(email=address, password_hash=_hasher.hash(validation.password(password)))
    session.add(user)
    try:
        flush_unique(session)
    except UniqueViolation:
        raise Conflict(f"a user with email {address} already exists") from None
    if first or needs_setup(session):
        # A CLI-created user also completes set-up: the web form must not offer it any more.
        _claim_setup(session, user.id)
    return Principal(user.id, user.email)


def create_first_user(session: Session, *, email: str, password: str) -> Principal:
    """Create the first account; only ever once, even when two browsers race (the claim row's key)."""
    if not needs_setup(session):
        raise Conflict("this installation already has an account; sign in instead", code="setup_done")
    return create_user(session, email=email, password=password, first=True)


def _claim_setup(session: Session, user_id: uuid.UUID) -> None:
    session.add(SetupClaim(id=1, user_id=user_id))
    try:
        flush_unique(session)
    except UniqueViolation:
        raise Conflict(
            "this installation already has an account; sign in instead", code="setup_done"
        ) from None


def throttle_sign_in(limiter: PreflightLimiter, *, email: str, client: str) -> None:
    """Count a sign-in attempt for this account from this client: guessing is bounded, and someone
    else's failed attempts cannot lock the owner out from another address."""
    retry_after = limiter.hit(f"{email.strip().lower()}|{client}")
    if retry_after is not None:
        raise RateLimited(
            f"Too many sign-in attempts for this account; try again in {retry_after} seconds.",
            retry_after=retry_after,
        )


def authenticate(session: Session, *, email: str, password: str) -> Principal:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    try:
        # Each verification takes ~64 MiB: a few at a time, however many requests arrive at once.
        with _VERIFICATIONS:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        raise NotAuthenticated("wrong email or password") from None
    if user is None:
        raise NotAuthenticated("wrong email or password")
    return Principal(user.id, user.email)


def create_api_token(session: Session, *, email: str, name: str = "cli") -> str:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotAuthenticated(f"no user with email {email.strip().lower()}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=_digest(token), name=name[:100]))
    return token


def principal_for_token(session: Session, token: str) -> Principal:
    row = session.execute(
        select(User.id, User.email)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == _digest(token))
    ).first()
    if row is None:
        raise NotAuthenticated("invalid API token")
    return Principal(row.id, row.email)


def start_session(session: Session, *, principal: Principal, max_age_s: int) -> NewSession:
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


def principal_for_session(session: Session, cookie_value: str) -> tuple[Principal, str]:
    """The signed-in user and the session's CSRF token."""
    row = session.execute(
        select(User.id, User.email, WebSession.csrf_token, WebSession.expires_at)
        .join(WebSession, WebSession.user_id == User.id)
        .where(WebSession.token_hash == _digest(cookie_value))
    ).first()
    if row is None or row.expires_at <= datetime.now(UTC):
        raise NotAuthenticated("please sign in")
    return Principal(row.id, row.email), row.csrf_token


def end_session(session: Session, cookie_value: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == _digest(cookie_value)))
