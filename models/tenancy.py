"""Organizations, users and memberships."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from sessions_api.core import db
from sessions_api.models.errors import InvalidInput, NotFound
from sessions_api.models.tables import Membership, Organization, Role, User


def create_organization(name: str) -> Organization:
    organization = Organization(name=_clean_name(name, "organization name"))
    with db.writing() as conn:
        conn.execute(insert(Organization).values(organization.model_dump()))
    return organization


def create_user(email: str, name: str | None = None) -> tuple[User, Organization]:
    """Create a user with their Personal organization (their default), of which they are admin."""
    email = email.strip()
    if "@" not in email or len(email) > 320 or any(ch.isspace() for ch in email):
        raise InvalidInput(f"{email!r} is not an email address")
    if name is not None:
        name = _clean_name(name, "user name")
    personal = Organization(name=f"{name or email} (Personal)"[:200], personal=True)
    user = User(email=email, name=name, default_organization_id=personal.id)
    membership = Membership(organization_id=personal.id, user_id=user.id, role=Role.admin)
    try:
        with db.writing() as conn:
            for row in (personal, user, membership):
                conn.execute(insert(type(row)).values(row.model_dump()))
    except IntegrityError:
        raise InvalidInput(f"a user with the email {email!r} already exists") from None
    return user, personal


def find_user(email: str) -> User | None:
    with db.reading() as conn:
        row = conn.execute(select(User).where(col(User.email) == email.strip())).first()
    return User.model_validate(row._mapping) if row is not None else None


def add_member(organization_id: uuid.UUID, user_id: uuid.UUID, role: Role) -> Membership:
    """Make a user a member of an organization, or change the role they have in it."""
    with db.writing() as conn:
        if conn.execute(select(col(Organization.id)).where(col(Organization.id) == organization_id)).first() is None:
            raise NotFound(f"no organization with id {organization_id}")
        if conn.execute(select(col(User.id)).where(col(User.id) == user_id)).first() is None:
            raise NotFound(f"no user with id {user_id}")
        key = (col(Membership.organization_id) == organization_id, col(Membership.user_id) == user_id)
        existing = conn.execute(select(Membership).where(*key)).first()
        if existing is None:
            membership = Membership(organization_id=organization_id, user_id=user_id, role=role)
            conn.execute(insert(Membership).values(membership.model_dump()))
            return membership
        conn.execute(update(Membership).where(*key).values(role=role))
    return Membership.model_validate({**existing._mapping, "role": role})


def organizations_of(user_id: uuid.UUID, only: uuid.UUID | None = None) -> Sequence[Row[uuid.UUID, str, bool, Role]]:
    """(id, name, personal, role) of the user's organizations (at most 1000), Personal first,
    then by name; with `only`, just that one."""
    query = (
        select(col(Organization.id), col(Organization.name), col(Organization.personal), col(Membership.role))
        .join(Membership, col(Membership.organization_id) == col(Organization.id))
        .where(col(Membership.user_id) == user_id)
        .order_by(col(Organization.personal).desc(), col(Organization.name), col(Organization.id))
        .limit(1000)  # the documented most
    )
    if only is not None:
        query = query.where(col(Organization.id) == only)
    with db.reading() as conn:
        return conn.execute(query).all()


def _clean_name(name: str, what: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput(f"the {what} must have 1 to 200 characters")
    return name
