"""Organizations, users and memberships."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from models.errors import InvalidInput, NotFound
from models.tables import Membership, Organization, Role, User
from sessions_api import db


def create_organization(name: str) -> Organization:
    name = _clean_name(name, "organization name")
    with db.writing() as session:
        organization = Organization(name=name)
        session.add(organization)
    return organization


def create_user(email: str, name: str | None = None) -> tuple[User, Organization]:
    """Create a user with their Personal organization (their default), of which they are admin."""
    email = email.strip()
    if "@" not in email or len(email) > 320 or any(ch.isspace() for ch in email):
        raise InvalidInput(f"{email!r} is not an email address")
    if name is not None:
        name = _clean_name(name, "user name")
    try:
        with db.writing() as session:
            personal = Organization(name=f"{name or email} (Personal)"[:200], personal=True)
            user = User(email=email, name=name, default_organization_id=personal.id)
            session.add(personal)
            session.flush()
            session.add(user)
            session.flush()
            session.add(Membership(organization_id=personal.id, user_id=user.id, role=Role.admin))
    except IntegrityError:
        raise InvalidInput(f"a user with the email {email!r} already exists") from None
    return user, personal


def add_member(organization_id: uuid.UUID, user_id: uuid.UUID, role: Role) -> Membership:
    """Make a user a member of an organization, or change the role they have in it."""
    with db.writing() as session:
        if session.get(Organization, organization_id) is None:
            raise NotFound(f"no organization with id {organization_id}")
        if session.get(User, user_id) is None:
            raise NotFound(f"no user with id {user_id}")
        membership = session.get(Membership, (organization_id, user_id))
        if membership is None:
            membership = Membership(organization_id=organization_id, user_id=user_id, role=role)
            session.add(membership)
        else:
            membership.role = role
    return membership


def organizations_of(user_id: uuid.UUID, only: uuid.UUID | None = None) -> list:
    """(id, name, personal, role) of the user's organizations (at most 1000), Personal first,
    then by name; with `only`, just that one."""
    query = (
        select(Organization.id, Organization.name, Organization.personal, Membership.role)
        .join(Membership, Membership.organization_id == Organization.id)
        .where(Membership.user_id == user_id)
        .order_by(Organization.personal.desc(), Organization.name, Organization.id)
        .limit(1000)  # the documented most
    )
    if only is not None:
        query = query.where(Organization.id == only)
    with db.reading() as conn:
        return conn.execute(query).all()


def _clean_name(name: str, what: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput(f"the {what} must have 1 to 200 characters")
    return name
