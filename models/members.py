"""Members: who belongs to an organization, and with which role.

The rules hold for every caller, the API's and the operator's alike:
- a Personal organization belongs to its user alone: it gains no members
  (`personal_organization`);
- an organization with an admin keeps one: its last admin can be neither demoted nor removed
  (`last_admin`);
- a member who leaves loses the keys bound to the organization: they are revoked with the
  membership (and `api_keys.authenticate` refuses a bound key whose user is not a member);
- a member who leaves or loses a role loses what it granted (models.grant_ends): the pending
  invitations they made as an admin, those addressed to them, their queued starts.

Changes to one organization's members take turns, so two admins cannot demote each other at
once. `created_at` is unique within an organization: the members list pages by it. Through
the API, members join by accepting an invitation (models.invitations); the operator adds them
directly (`add_member`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, delete, func, insert, select, update
from sqlalchemy.orm import Mapped
from sqlmodel import col

from sessions_api.core import db
from sessions_api.models import api_keys, audit, grant_ends
from sessions_api.models.as_text import rfc3339_text, uuid_text
from sessions_api.models.errors import Conflict, Forbidden, NotFound, Unprocessable
from sessions_api.models.instants import InstantAllocator, take_turns
from sessions_api.models.paging import Page, read_page
from sessions_api.models.tables import ApiKey, AuditEventType, Membership, Organization, Role, User

NOT_A_MEMBER = "No member with this id exists in this organization."


def add_member(organization_id: uuid.UUID, user_id: uuid.UUID, role: Role) -> Membership:
    """The operator's: make a user a member of an organization, or change their role in it."""
    with db.writing() as conn:
        personal = takes_members_turn(conn=conn, organization_id=organization_id)
        if conn.execute(select(col(User.id)).where(col(User.id) == user_id)).first() is None:
            raise NotFound(f"no user with id {user_id}")
        current = role_of(conn=conn, organization_id=organization_id, user_id=user_id)
        if current is None:
            if personal:
                raise gains_no_members()
            insert_membership(
                conn=conn, actor=audit.OPERATOR, organization_id=organization_id, user_id=user_id, role=role
            )
        else:
            _change_role(conn=conn, actor=audit.OPERATOR, organization_id=organization_id, user_id=user_id, role=role)
        row = conn.execute(select(Membership).where(*_membership(organization_id, user_id))).one()
    return Membership.model_validate(row._mapping)


def change_role(caller: api_keys.Principal, user_id: uuid.UUID, role: Role) -> Row[Any]:
    """Give a member of the organization the caller acts on another role."""
    organization_id = caller.organization_id
    with db.writing() as conn:
        takes_members_turn(conn=conn, organization_id=organization_id)
        _change_role(conn=conn, actor=caller.actor, organization_id=organization_id, user_id=user_id, role=role)
        return _member_view(conn=conn, organization_id=organization_id, user_id=user_id)


def remove_member(caller: api_keys.Principal, user_id: uuid.UUID) -> None:
    """Remove a member from the organization the caller acts on: an admin may remove anyone,
    every member themselves. Their keys bound to the organization are revoked with it."""
    organization_id = caller.organization_id
    if caller.role is not Role.admin and caller.user_id != user_id:
        raise Forbidden(
            f"Your role in this organization ({caller.role.value}) may not remove other members; it takes admin."
        )
    with db.writing() as conn:
        takes_members_turn(conn=conn, organization_id=organization_id)
        role = role_of(conn=conn, organization_id=organization_id, user_id=user_id)
        if role is None:
            raise NotFound(NOT_A_MEMBER)
        if role is Role.admin:
            _keep_an_admin(conn=conn, organization_id=organization_id, user_id=user_id)
        conn.execute(delete(Membership).where(*_membership(organization_id, user_id)))
        # Before the keys: revoking them records their events, and the audit turns come last.
        ended = grant_ends.member_left(conn=conn, actor=caller.actor, organization_id=organization_id, user_id=user_id)
        api_keys.revoke_keys(
            conn=conn,
            actor=caller.actor,
            where=and_(col(ApiKey.user_id) == user_id, col(ApiKey.organization_id) == organization_id),
        )
        removed = _member_event(
            organization_id, user_id, AuditEventType.member_removed, caller.actor, before={"role": role.value}
        )
        audit.record(conn=conn, events=[removed, *ended])


def list_page(organization_id: uuid.UUID, limit: int, before: datetime | None) -> Page:
    """Up to `limit` members who joined strictly before `before`, newest first."""
    where = col(Membership.organization_id) == organization_id
    return read_page(_MEMBER_VIEW, col(Membership.created_at), limit, before, where)


def insert_membership(
    *, conn: Connection, actor: audit.Actor, organization_id: uuid.UUID, user_id: uuid.UUID, role: Role
) -> None:
    """Insert a membership at the organization's next free instant, recording it. The caller
    checks the rules (and takes the organization's turn, for an organization others can see)."""
    allocator = InstantAllocator(conn, col(Membership.created_at), col(Membership.organization_id), organization_id)
    membership = Membership(organization_id=organization_id, user_id=user_id, role=role, created_at=allocator.next())
    conn.execute(insert(Membership).values(membership.model_dump()))
    added = _member_event(organization_id, user_id, AuditEventType.member_added, actor, after={"role": role.value})
    audit.record(conn=conn, events=[added])


def takes_members_turn(*, conn: Connection, organization_id: uuid.UUID) -> bool:
    """Take the organization's turn to change its members; returns whether it is a Personal one."""
    take_turns(conn=conn, scopes=[f"memberships:{organization_id}"])
    personal: bool | None = conn.execute(
        select(col(Organization.personal)).where(col(Organization.id) == organization_id)
    ).scalar()
    if personal is None:
        raise NotFound(f"no organization with id {organization_id}")
    return personal


def gains_no_members() -> Unprocessable:
    return Unprocessable(
        "personal_organization", "A Personal organization belongs to its user alone: it cannot gain members."
    )


def _change_role(
    *, conn: Connection, actor: audit.Actor, organization_id: uuid.UUID, user_id: uuid.UUID, role: Role
) -> None:
    before = role_of(conn=conn, organization_id=organization_id, user_id=user_id)
    if before is None:
        raise NotFound(NOT_A_MEMBER)
    if before == role:
        return
    if before is Role.admin:
        _keep_an_admin(conn=conn, organization_id=organization_id, user_id=user_id)
    conn.execute(update(Membership).where(*_membership(organization_id, user_id)).values(role=role))
    ended = grant_ends.role_changed(
        conn=conn, actor=actor, organization_id=organization_id, user_id=user_id, before=before, after=role
    )
    changed = _member_event(
        organization_id,
        user_id,
        AuditEventType.member_role_changed,
        actor,
        before={"role": before.value},
        after={"role": role.value},
    )
    audit.record(conn=conn, events=[changed, *ended])


def _keep_an_admin(*, conn: Connection, organization_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Refuse to take the admin role from `user_id` when no other member of the organization has it."""
    others = conn.execute(
        select(func.count()).where(
            col(Membership.organization_id) == organization_id,
            col(Membership.role) == Role.admin,
            col(Membership.user_id) != user_id,
        )
    ).scalar_one()
    if others == 0:
        raise Conflict("last_admin", "This is the organization's last admin: make another member admin first.")


def role_of(*, conn: Connection, organization_id: uuid.UUID, user_id: uuid.UUID) -> Role | None:
    role: Role | None = conn.execute(
        select(col(Membership.role)).where(*_membership(organization_id, user_id))
    ).scalar()
    return role


def _membership(organization_id: uuid.UUID, user_id: uuid.UUID) -> tuple[Any, ...]:
    return col(Membership.organization_id) == organization_id, col(Membership.user_id) == user_id


def _member_event(
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
    type: AuditEventType,
    actor: audit.Actor,
    *,
    before: audit.Snapshot | None = None,
    after: audit.Snapshot | None = None,
) -> audit.Event:
    return audit.Event(organization_id, type, actor, audit.TargetKind.member, user_id, before=before, after=after)


# What the API answers with, ids and instants already its text (see models.as_text).
_MEMBER_COLUMNS: tuple[ColumnElement[Any] | Mapped[Any], ...] = (
    uuid_text(col(User.id)).label("user_id"),
    col(User.email),
    col(User.name),
    col(Membership.role),
    rfc3339_text(col(Membership.created_at)).label("created_at"),
)
_MEMBER_VIEW = select(*_MEMBER_COLUMNS).select_from(Membership).join(User, col(User.id) == col(Membership.user_id))


def _member_view(*, conn: Connection, organization_id: uuid.UUID, user_id: uuid.UUID) -> Row[Any]:
    row = conn.execute(_MEMBER_VIEW.where(*_membership(organization_id, user_id))).first()
    if row is None:
        raise NotFound(NOT_A_MEMBER)
    return row
