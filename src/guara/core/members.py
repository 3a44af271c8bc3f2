"""Project members: add an existing account by email, change a role, remove a member or leave.

Only owners manage members; anyone may leave. A project always keeps an owner: the last one can be
neither demoted nor removed (``last_owner``). Every change is audited in its own transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from guara.core import audit
from guara.core.access import project_of
from guara.core.accounts import Principal
from guara.core.errors import Conflict, InvalidInput, NotFound
from guara.core.roles import Action, Role
from guara.store import UniqueViolation, flush
from guara.store.models import Membership, User

if TYPE_CHECKING:
    from guara.context import AppContext


@dataclass(frozen=True)
class MemberView:
    user_id: uuid.UUID
    email: str
    role: Role


def role_of(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        choices = ", ".join(role.value for role in Role)
        raise InvalidInput(f"role must be one of: {choices}", code="invalid_role", field="role") from None


async def list_members(ctx: AppContext, principal: Principal, *, project_id: uuid.UUID) -> list[MemberView]:
    """The project's members by email."""

    def work(session: Session) -> list[MemberView]:
        project_of(session, principal=principal, project_id=project_id, action=Action.MEMBERS_READ)
        rows = session.execute(
            select(User.id, User.email, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.project_id == project_id)
            .order_by(User.email)
        )
        return [MemberView(user_id, email, Role(role)) for user_id, email, role in rows]

    return await ctx.db.run(work)


async def add_member(
    ctx: AppContext, principal: Principal, *, project_id: uuid.UUID, email: str, role: str
) -> MemberView:
    """Add the account with this email to the project (audited ``member.add``)."""
    wanted = role_of(role)
    address = email.strip().lower()

    def work(session: Session) -> MemberView:
        project_of(session, principal=principal, project_id=project_id, action=Action.MEMBERS_MANAGE)
        user = session.scalar(select(User).where(User.email == address))
        if user is None:
            raise NotFound(
                f"no account has the email {address}: the admin creates it first", code="unknown_account"
            )
        taken = Conflict(f"{address} is already a member of this project", code="already_member")
        if session.get(Membership, (project_id, user.id)) is not None:
            raise taken
        session.add(Membership(project_id=project_id, user_id=user.id, role=wanted.value))
        try:
            flush(session)
        except UniqueViolation:
            raise taken from None
        _record(session, principal, project_id, user, audit.MemberAdded(user.email, wanted.value))
        return MemberView(user.id, user.email, wanted)

    return await ctx.db.run(work)


async def change_role(
    ctx: AppContext, principal: Principal, *, project_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> MemberView:
    """Give a member another role (audited ``member.role``); the last owner keeps theirs."""
    wanted = role_of(role)

    def work(session: Session) -> MemberView:
        project_of(session, principal=principal, project_id=project_id, action=Action.MEMBERS_MANAGE)
        membership, user = _member(session, project_id, user_id)
        previous = Role(membership.role)
        if previous != wanted:
            if previous == Role.OWNER:
                _keep_an_owner(session, project_id)
            membership.role = wanted.value
            flush(session)
            event = audit.MemberRoleChanged(user.email, wanted.value, previous.value)
            _record(session, principal, project_id, user, event)
        return MemberView(user.id, user.email, wanted)

    return await ctx.db.run(work)


async def remove_member(
    ctx: AppContext, principal: Principal, *, project_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    """Remove a member (owners), or leave the project (anyone, naming themselves); audited
    ``member.remove``. The last owner can do neither."""
    leaving = user_id == principal.user_id

    def work(session: Session) -> None:
        action = Action.PROJECT_LEAVE if leaving else Action.MEMBERS_MANAGE
        project_of(session, principal=principal, project_id=project_id, action=action)
        membership, user = _member(session, project_id, user_id)
        if membership.role == Role.OWNER:
            _keep_an_owner(session, project_id)
        role = membership.role
        session.delete(membership)
        flush(session)
        _record(session, principal, project_id, user, audit.MemberRemoved(user.email, role, leaving))

    await ctx.db.run(work)


def _member(session: Session, project_id: uuid.UUID, user_id: uuid.UUID) -> tuple[Membership, User]:
    row = session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.project_id == project_id, Membership.user_id == user_id)
        # Two owners demoting each other at once: one waits for the other's count (PostgreSQL).
        .with_for_update(of=Membership)
    ).first()
    if row is None:
        raise NotFound("no such member in this project", code="member_not_found")
    return row[0], row[1]


def _keep_an_owner(session: Session, project_id: uuid.UUID) -> None:
    """Conflict when the project has one owner left (who is about to stop being one)."""
    owners = session.execute(
        select(Membership.user_id)
        .where(Membership.project_id == project_id, Membership.role == Role.OWNER.value)
        .with_for_update()
    ).all()
    if len(owners) <= 1:
        raise Conflict("a project needs an owner: make another member owner first", code="last_owner")


def _record(
    session: Session, principal: Principal, project_id: uuid.UUID, user: User, event: audit.AuditEvent
) -> None:
    target = audit.Target("member", str(user.id), user.email)
    audit.record_in_project(session, principal=principal, project_id=project_id, target=target, event=event)
