"""Invitations: how a member joins an organization through the API.

An admin invites an email address with a role; the answer is the same whether or not an
account has that address, and carries nothing of one, so inviting is no way to look accounts
up. The invitee (the account with that address) lists their invitations and accepts or
declines; accepting writes the membership and its audit event in one transaction. An
invitation is pending for `TTL` (7 days), then reads as expired; an admin may revoke a pending
one, and it is revoked when its maker leaves or stops being an admin, or its invitee is removed
(models.grant_ends). An organization has at most `max_pending_invitations` pending, one per
address. A key bound to an organization sees and answers only that organization's invitations.
The operator's `sessions-api member add` still adds members directly (models.members).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, case, func, insert, literal, select, update
from sqlmodel import col

from sessions_api.core import db, settings
from sessions_api.core.timestamps import utcnow
from sessions_api.models import api_keys, audit, grant_ends, members
from sessions_api.models.as_text import rfc3339_text, uuid_text
from sessions_api.models.errors import Conflict, InvalidInput, NotFound, limit_reached
from sessions_api.models.instants import InstantAllocator, take_turns
from sessions_api.models.paging import Page, read_page
from sessions_api.models.tables import Invitation, InvitationStatus, Role, User
from sessions_api.models.text import is_email_address

TTL = timedelta(days=7)
NO_SUCH_INVITATION = "No invitation with this id is addressed to you or exists in the selected organization."


def _status(now: datetime) -> ColumnElement[str]:
    """The status as the API shows it: a pending invitation past its expiry is expired."""
    return case(
        (
            and_(col(Invitation.status) == InvitationStatus.pending.value, col(Invitation.expires_at) <= now),
            literal(InvitationStatus.expired.value),
        ),
        else_=col(Invitation.status),
    )


def _view(now: datetime) -> Any:
    return select(
        uuid_text(col(Invitation.id)).label("id"),
        uuid_text(col(Invitation.organization_id)).label("organization_id"),
        col(Invitation.email),
        col(Invitation.role),
        _status(now).label("status"),
        rfc3339_text(col(Invitation.created_at)).label("created_at"),
        rfc3339_text(col(Invitation.expires_at)).label("expires_at"),
    )


def invite(caller: api_keys.Principal, email: str, role: Role) -> Row[Any]:
    """A pending invitation of `email` to the organization the caller acts on, as the API shows
    it: the same answer whether or not an account has the address."""
    email = email.strip()
    if not is_email_address(email):
        raise InvalidInput("the email must be an email address (an '@', no spaces, at most 320 characters)")
    organization_id = caller.organization_id
    now = utcnow()
    invitation_id = uuid.uuid4()
    with db.writing() as conn:
        if members.takes_members_turn(conn=conn, organization_id=organization_id):
            raise members.gains_no_members()
        _refuse_past_caps(conn=conn, organization_id=organization_id, email=email, now=now)
        allocator = InstantAllocator(conn, col(Invitation.created_at), col(Invitation.organization_id), organization_id)
        created_at = allocator.next()
        conn.execute(
            insert(Invitation).values(
                id=invitation_id,
                organization_id=organization_id,
                email=email,
                role=role,
                status=InvitationStatus.pending.value,
                invited_by_user_id=caller.user_id,
                created_at=created_at,
                expires_at=created_at + TTL,
            )
        )
        return _one(conn=conn, where=col(Invitation.id) == invitation_id, now=now)


def _refuse_past_caps(*, conn: Connection, organization_id: uuid.UUID, email: str, now: datetime) -> None:
    """One pending invitation per address and organization (`409 already_invited`), and at most
    `max_pending_invitations` pending per organization (`409 limit_reached`); the caller holds
    the organization's members turn, so the counts and the insert agree."""
    pending = and_(
        col(Invitation.organization_id) == organization_id,
        col(Invitation.status) == InvitationStatus.pending.value,
        col(Invitation.expires_at) > now,
    )
    if conn.execute(select(col(Invitation.id)).where(pending, col(Invitation.email) == email).limit(1)).first():
        raise Conflict("already_invited", "This address already has a pending invitation to this organization.")
    cap = settings.current().max_pending_invitations
    # Reads at most cap + 1 entries of the pending invitations' index.
    counted = select(col(Invitation.id)).where(pending).limit(cap + 1).subquery()
    if conn.execute(select(func.count()).select_from(counted)).scalar_one() >= cap:
        raise limit_reached("pending invitations in this organization", cap, "SESSIONS_API_MAX_PENDING_INVITATIONS")


def list_for_organization(organization_id: uuid.UUID, limit: int, before: datetime | None) -> Page:
    """The organization's invitations, every status, newest first."""
    where = col(Invitation.organization_id) == organization_id
    return read_page(_view(utcnow()), col(Invitation.created_at), limit, before, where)


def revoke(caller: api_keys.Principal, invitation_id: uuid.UUID) -> None:
    """Revoke a pending invitation of the caller's organization; NotFound for any other."""
    now = utcnow()
    of_organization = and_(
        col(Invitation.id) == invitation_id, col(Invitation.organization_id) == caller.organization_id
    )
    with db.writing() as conn:
        _pending(conn=conn, where=of_organization, now=now)
        events = grant_ends.revoke_invitations(
            conn=conn, actor=caller.actor, where=of_organization, reason=grant_ends.InvitationEnd.admin
        )
        audit.record(conn=conn, events=events)


def list_mine(caller: api_keys.Principal, limit: int, before: datetime | None) -> Page:
    """The pending invitations addressed to the caller's account's email, newest first."""
    now = utcnow()
    with db.reading() as conn:
        email = _email_of(conn=conn, user_id=caller.user_id)
    where = and_(
        col(Invitation.email) == email,
        col(Invitation.status) == InvitationStatus.pending.value,
        col(Invitation.expires_at) > now,
        *_bound_to(caller),
    )
    return read_page(_view(now), col(Invitation.created_at), limit, before, where)


def _bound_to(caller: api_keys.Principal) -> tuple[ColumnElement[bool], ...]:
    """A key bound to an organization sees and answers only that organization's invitations."""
    if caller.bound_organization_id is None:
        return ()
    return (col(Invitation.organization_id) == caller.bound_organization_id,)


def accept(caller: api_keys.Principal, invitation_id: uuid.UUID) -> Row[Any]:
    """Join the organization an invitation addressed to the caller names, with its role: the
    membership, its audit event and the invitation's answer in one transaction."""
    return _answer(caller, invitation_id, InvitationStatus.accepted)


def decline(caller: api_keys.Principal, invitation_id: uuid.UUID) -> Row[Any]:
    return _answer(caller, invitation_id, InvitationStatus.declined)


def _answer(caller: api_keys.Principal, invitation_id: uuid.UUID, answer: InvitationStatus) -> Row[Any]:
    now = utcnow()
    with db.writing() as conn:
        email = _email_of(conn=conn, user_id=caller.user_id)
        addressed = and_(col(Invitation.id) == invitation_id, col(Invitation.email) == email, *_bound_to(caller))
        organization_id = conn.execute(select(col(Invitation.organization_id)).where(addressed)).scalar()
        if organization_id is None:
            raise NotFound(NO_SUCH_INVITATION)
        # The members turn before the invitation's row lock, in the order removeMember takes them
        # (it revokes the invitations its member made or was sent: models.grant_ends).
        take_turns(conn=conn, scopes=[f"memberships:{organization_id}"])
        invitation = _pending(conn=conn, where=addressed, now=now)
        if answer is InvitationStatus.accepted:
            if members.role_of(conn=conn, organization_id=organization_id, user_id=caller.user_id) is not None:
                raise Conflict("already_member", "You are already a member of this organization.")
            members.insert_membership(
                conn=conn,
                actor=caller.actor,
                organization_id=organization_id,
                user_id=caller.user_id,
                role=Role(invitation.role),
            )
        conn.execute(update(Invitation).where(addressed).values(status=answer.value, responded_at=now))
        return _one(conn=conn, where=col(Invitation.id) == invitation_id, now=now)


def _pending(*, conn: Connection, where: ColumnElement[bool], now: datetime) -> Row[Any]:
    """The invitation `where` selects, locked, if it is still pending; NotFound if there is
    none, 409 `invitation_not_pending` once it was answered, revoked or has expired."""
    query = select(Invitation).where(where)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    invitation = conn.execute(query).first()
    if invitation is None:
        raise NotFound(NO_SUCH_INVITATION)
    if invitation.status != InvitationStatus.pending.value or invitation.expires_at <= now:
        status = invitation.status if invitation.expires_at > now else InvitationStatus.expired.value
        raise Conflict("invitation_not_pending", f"This invitation is {status}: it can no longer be answered.")
    return invitation


def _one(*, conn: Connection, where: ColumnElement[bool], now: datetime) -> Row[Any]:
    return conn.execute(_view(now).where(where)).one()


def _email_of(*, conn: Connection, user_id: uuid.UUID) -> str:
    email: str = conn.execute(select(col(User.email)).where(col(User.id) == user_id)).scalar_one()
    return email
