"""Grants end with their maker's and their holder's right (docs/contributors/security.md).

When a member leaves an organization or loses a role, what they were granted or made in it
ends in the same transaction: the pending invitations they made as an admin are revoked, so
are the pending invitations addressed to them there, and their queued starts are cancelled.
Each end is recorded in the audit log with its reason: the functions here return the events,
which the caller records last (models.audit.record: the audit turns come after every other
lock). Keys follow their own rules (models.api_keys, models.members); the queue checks every
right again at the moment it starts a session (models.queue_serving); an artifact's URL that
this server serves is checked against its holder's key and membership at each use
(`holder_may`).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Collection

from sqlalchemy import ColumnElement, Connection, and_, or_, select, update
from sqlmodel import col

from sessions_api.core import db
from sessions_api.core.timestamps import utcnow
from sessions_api.models import audit, queue
from sessions_api.models.api_keys import Principal
from sessions_api.models.tables import (
    ApiKey,
    AuditEventType,
    Invitation,
    InvitationStatus,
    Membership,
    Role,
    SessionRequest,
    User,
)

# The roles that may start a session (createSession's x-required-roles): a queued start of a
# member who no longer has one is cancelled.
MAY_START = frozenset({Role.admin, Role.readwrite})


class InvitationEnd(enum.StrEnum):
    """Why a pending invitation was revoked."""

    admin = "admin"  # an admin revoked it (revokeInvitation)
    maker_removed = "maker_removed"
    maker_demoted = "maker_demoted"
    invitee_removed = "invitee_removed"


def holder_of(caller: Principal) -> str:
    """Who a signed URL is given to (core.stores' `holder`): the caller's key and organization."""
    return f"{caller.key_id}:{caller.organization_id}"


def holder_may(holder: str, roles: Collection[Role]) -> bool:
    """Whether the key a URL was given to still works, and its user is still a member of the
    organization with one of `roles`: a URL this server serves ends with its holder's grant,
    not only at its expiry. A URL signed before holders were kept names none: it lives to its
    expiry."""
    if not holder:
        return True
    key_id, _, organization_id = holder.partition(":")
    now = utcnow()
    with db.reading() as conn:
        role = conn.execute(
            select(col(Membership.role))
            .join(ApiKey, col(ApiKey.user_id) == col(Membership.user_id))
            .where(
                col(ApiKey.id) == uuid.UUID(key_id),
                col(Membership.organization_id) == uuid.UUID(organization_id),
                col(ApiKey.revoked_at).is_(None),
                or_(col(ApiKey.expires_at).is_(None), col(ApiKey.expires_at) > now),
                or_(
                    col(ApiKey.organization_id).is_(None),
                    col(ApiKey.organization_id) == col(Membership.organization_id),
                ),
            )
        ).scalar()
    return role is not None and Role(role) in roles


def revoke_invitations(
    *, conn: Connection, actor: audit.Actor, where: ColumnElement[bool], reason: InvitationEnd
) -> list[audit.Event]:
    """Revoke the pending invitations `where` selects; returns an audit event for each."""
    now = utcnow()
    revoked = conn.execute(
        update(Invitation)
        .where(where, col(Invitation.status) == InvitationStatus.pending.value, col(Invitation.expires_at) > now)
        .values(status=InvitationStatus.revoked.value, responded_at=now)
        .returning(col(Invitation.id), col(Invitation.organization_id), col(Invitation.role))
    ).all()
    return [
        audit.Event(
            row.organization_id,
            AuditEventType.invitation_revoked,
            actor,
            audit.TargetKind.invitation,
            row.id,
            before={"status": InvitationStatus.pending.value, "role": Role(row.role).value},
            after={"status": InvitationStatus.revoked.value, "reason": reason.value},
        )
        for row in revoked
    ]


def member_left(
    *, conn: Connection, actor: audit.Actor, organization_id: uuid.UUID, user_id: uuid.UUID
) -> list[audit.Event]:
    """End what a member removed from the organization made or held in it; returns the events."""
    in_organization = col(Invitation.organization_id) == organization_id
    made = and_(in_organization, col(Invitation.invited_by_user_id) == user_id)
    email = select(col(User.email)).where(col(User.id) == user_id).scalar_subquery()
    addressed = and_(in_organization, col(Invitation.email) == email)
    return [
        *queue.cancel_queued(
            conn=conn, actor=actor, where=_queued_by(organization_id, user_id), reason=queue.CancelReason.member_removed
        ),
        *revoke_invitations(conn=conn, actor=actor, where=made, reason=InvitationEnd.maker_removed),
        *revoke_invitations(conn=conn, actor=actor, where=addressed, reason=InvitationEnd.invitee_removed),
    ]


def role_changed(
    *, conn: Connection, actor: audit.Actor, organization_id: uuid.UUID, user_id: uuid.UUID, before: Role, after: Role
) -> list[audit.Event]:
    """End what a member's old role granted and the new one does not; returns the events."""
    events = []
    if before in MAY_START and after not in MAY_START:
        events += queue.cancel_queued(
            conn=conn, actor=actor, where=_queued_by(organization_id, user_id), reason=queue.CancelReason.role_changed
        )
    if before is Role.admin and after is not Role.admin:  # only admins invite
        made = and_(col(Invitation.organization_id) == organization_id, col(Invitation.invited_by_user_id) == user_id)
        events += revoke_invitations(conn=conn, actor=actor, where=made, reason=InvitationEnd.maker_demoted)
    return events


def _queued_by(organization_id: uuid.UUID, user_id: uuid.UUID) -> ColumnElement[bool]:
    return and_(col(SessionRequest.organization_id) == organization_id, col(SessionRequest.user_id) == user_id)
