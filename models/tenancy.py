"""Organizations and users.

`create_organization` and `create_user` are the operator's (the command line's, recorded as
such in the audit log); an API caller creates an organization with
`create_organization_for`, becoming its admin. Memberships are `models.members`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Connection, Row, Select, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from sessions_api.core import db, settings
from sessions_api.models import api_keys, audit, members, plans
from sessions_api.models.errors import (
    NO_SUCH_ORGANIZATION,
    Forbidden,
    InvalidInput,
    NotFound,
    Unprocessable,
    limit_reached,
)
from sessions_api.models.instants import take_turns
from sessions_api.models.tables import AuditEventType, Membership, Organization, Role, User
from sessions_api.models.text import clean_name, is_email_address

# An organization as its members see it: (id, name, personal, their role, its plan, its stored bytes).
OrganizationRow = Row[uuid.UUID, str, bool, Role, int, int, int, float, int]


def create_organization(name: str) -> Organization:
    """The operator's: an organization with no members yet."""
    organization = Organization(name=clean_name(name, "organization name"))
    with db.writing() as conn:
        _insert_organization(conn=conn, actor=audit.OPERATOR, organization=organization)
    return organization


def create_organization_for(caller: api_keys.Principal, name: str) -> OrganizationRow:
    """A new organization whose admin is the caller, as `organizations_of` shows it. A key
    bound to an organization acts on that one only, so it creates none."""
    if caller.bound_organization_id is not None:
        raise Forbidden("A key bound to an organization acts on that organization only: it cannot create others.")
    organization = Organization(name=clean_name(name, "organization name"), created_by_user_id=caller.user_id)
    cap = settings.current().max_organizations_per_user
    with db.writing() as conn:
        # One user's creations take turns, so that two at once cannot both pass the cap.
        take_turns(conn=conn, scopes=[f"organizations-created-by:{caller.user_id}"])
        created = conn.execute(
            select(func.count()).where(col(Organization.created_by_user_id) == caller.user_id)
        ).scalar_one()
        if created >= cap:
            raise limit_reached("organizations created by one user", cap, "SESSIONS_API_MAX_ORGANIZATIONS_PER_USER")
        _insert_organization(conn=conn, actor=caller.actor, organization=organization)
        members.insert_membership(
            conn=conn, actor=caller.actor, organization_id=organization.id, user_id=caller.user_id, role=Role.admin
        )
        return _organization_view(conn=conn, user_id=caller.user_id, organization_id=organization.id)


def create_user(email: str, name: str | None = None) -> tuple[User, Organization]:
    """The operator's: a user with their Personal organization (their default), of which they
    are admin."""
    email = email.strip()
    if not is_email_address(email):
        raise InvalidInput(f"{email!r} is not an email address")
    if name is not None:
        name = clean_name(name, "user name")
    personal = Organization(name=f"{name or email} (Personal)"[:200], personal=True)
    user = User(email=email, name=name, default_organization_id=personal.id)
    try:
        with db.writing() as conn:
            _insert_organization(conn=conn, actor=audit.OPERATOR, organization=personal)
            conn.execute(insert(User).values(user.model_dump()))
            members.insert_membership(
                conn=conn, actor=audit.OPERATOR, organization_id=personal.id, user_id=user.id, role=Role.admin
            )
    except IntegrityError:
        raise InvalidInput(f"a user with the email {email!r} already exists") from None
    return user, personal


def find_user(email: str) -> User | None:
    with db.reading() as conn:
        row = conn.execute(select(User).where(col(User.email) == email.strip())).first()
    return User.model_validate(row._mapping) if row is not None else None


def get_organization(caller: api_keys.Principal) -> OrganizationRow:
    """The organization the caller acts on, as `organizations_of` shows it."""
    with db.reading() as conn:
        return _organization_view(conn=conn, user_id=caller.user_id, organization_id=caller.organization_id)


def rename_organization(caller: api_keys.Principal, name: str) -> OrganizationRow:
    """Rename the organization the caller acts on. A Personal organization keeps its user's name."""
    name = clean_name(name, "organization name")
    organization_id = caller.organization_id
    with db.writing() as conn:
        before = conn.execute(
            select(col(Organization.name), col(Organization.personal)).where(col(Organization.id) == organization_id)
        ).one()
        if before.personal:
            raise Unprocessable(
                "personal_organization", "A Personal organization is named after its user: it cannot be renamed."
            )
        if before.name != name:
            conn.execute(update(Organization).where(col(Organization.id) == organization_id).values(name=name))
            renamed = audit.Event(
                organization_id,
                AuditEventType.organization_renamed,
                caller.actor,
                audit.TargetKind.organization,
                organization_id,
                before={"name": before.name},
                after={"name": name},
            )
            audit.record(conn=conn, events=[renamed])
        return _organization_view(conn=conn, user_id=caller.user_id, organization_id=organization_id)


def organizations_of(user_id: uuid.UUID, only: uuid.UUID | None = None) -> Sequence[OrganizationRow]:
    """(id, name, personal, role, plan) of the user's organizations (at most 1000), Personal
    first, then by name; with `only`, just that one."""
    query = _organizations_query(user_id).limit(1000)  # the documented most
    if only is not None:
        query = query.where(col(Organization.id) == only)
    with db.reading() as conn:
        return conn.execute(query).all()


def _organizations_query(user_id: uuid.UUID) -> Select[uuid.UUID, str, bool, Role, int, int, int, float, int]:
    return (
        select(
            col(Organization.id),
            col(Organization.name),
            col(Organization.personal),
            col(Membership.role),
            plans.max_live_sessions_column().label("max_live_sessions"),
            plans.max_queued_sessions_column().label("max_queued_sessions"),
            plans.max_storage_bytes_column().label("max_storage_bytes"),
            plans.artifact_retention_days_column().label("artifact_retention_days"),
            col(Organization.stored_bytes),
        )
        .join(Membership, col(Membership.organization_id) == col(Organization.id))
        .where(col(Membership.user_id) == user_id)
        .order_by(col(Organization.personal).desc(), col(Organization.name), col(Organization.id))
    )


def _organization_view(*, conn: Connection, user_id: uuid.UUID, organization_id: uuid.UUID) -> OrganizationRow:
    row = conn.execute(_organizations_query(user_id).where(col(Organization.id) == organization_id)).first()
    if row is None:
        raise NotFound(NO_SUCH_ORGANIZATION)
    return row


def _insert_organization(*, conn: Connection, actor: audit.Actor, organization: Organization) -> None:
    conn.execute(insert(Organization).values(organization.model_dump()))
    created = audit.Event(
        organization.id,
        AuditEventType.organization_created,
        actor,
        audit.TargetKind.organization,
        organization.id,
        after={"name": organization.name},
    )
    audit.record(conn=conn, events=[created])
