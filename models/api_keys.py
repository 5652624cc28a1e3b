"""API keys: creation, revocation, and the lookup behind every authenticated request.

A key reads `sapi_<lookup id>_<secret>`. The lookup id (64 random bits) finds the row; the
secret (256 random bits) is checked against its stored SHA-256 in constant time. A fast hash
is the right one here: the secret is random, not a password, so it cannot be guessed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Uuid,
    and_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import OperationalError
from sqlmodel import col

from sessions_api.core import db
from sessions_api.core.ids import parse_uuid
from sessions_api.core.timestamps import utcnow
from sessions_api.models.errors import AccessDenied, InvalidInput, NotFound
from sessions_api.models.tables import ApiKey, Membership, Organization, Role, User

KEY_PREFIX = "sapi_"
_KEY_FORMAT = re.compile(r"sapi_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class Principal:
    """Who is calling, and the organization the request acts on."""

    user_id: uuid.UUID
    key_id: uuid.UUID
    organization_id: uuid.UUID
    role: Role
    bound_organization_id: uuid.UUID | None  # the only organization a bound key may act on
    last_use_due: bool = False  # the key's lastUsedAt is older than the interval: record_use()


def create_key(
    user_id: uuid.UUID, organization_id: uuid.UUID | None = None, name: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns it with its secret, which is not stored and cannot be shown again."""
    lookup_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        lookup_id=lookup_id, secret_hash=_hash(secret), user_id=user_id, organization_id=organization_id, name=name
    )
    with db.writing() as conn:
        if not _exists(conn=conn, where=col(User.id) == user_id):
            raise NotFound(f"no user with id {user_id}")
        if organization_id is not None:
            if not _exists(conn=conn, where=col(Organization.id) == organization_id):
                raise NotFound(f"no organization with id {organization_id}")
            if not _exists(
                conn=conn,
                where=and_(col(Membership.organization_id) == organization_id, col(Membership.user_id) == user_id),
            ):
                raise InvalidInput("a key can only be bound to an organization its user is a member of")
        conn.execute(insert(ApiKey).values(key.model_dump()))
    return key, f"{KEY_PREFIX}{lookup_id}_{secret}"


def _exists(*, conn: Connection, where: ColumnElement[bool]) -> bool:
    return conn.execute(select(1).where(where).limit(1)).first() is not None


def revoke_key(key_id: uuid.UUID) -> ApiKey:
    """Revoke a key; it fails from the next request on. Revoking twice keeps the first time."""
    with db.writing() as conn:
        conn.execute(
            update(ApiKey).where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None)).values(revoked_at=utcnow())
        )
        row = conn.execute(select(ApiKey).where(col(ApiKey.id) == key_id)).first()
    if row is None:
        raise NotFound(f"no API key with id {key_id}")
    return ApiKey.model_validate(row._mapping)


def authenticate(token: str, requested_organization: str | None, last_used_interval: timedelta) -> Principal | None:
    """The principal behind a bearer token, or None when the token is not a live key.

    The organization is `requested_organization` if given, else the key's bound organization,
    else the user's default; AccessDenied when the caller may not act on it.
    """
    match = _KEY_FORMAT.fullmatch(token)
    if match is None:
        return None
    lookup_id, secret = match.groups()
    requested = parse_uuid(requested_organization) if requested_organization is not None else None
    if requested is not None:
        query, values = _FOR_REQUESTED_ORGANIZATION, {"lookup_id": lookup_id, "requested": requested}
    else:
        query, values = _FOR_DEFAULT_ORGANIZATION, {"lookup_id": lookup_id}
    with db.reading() as conn:
        row = conn.execute(query, values).first()
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)) or row.revoked_at is not None:
        return None
    if requested_organization is not None and (
        requested is None or (row.organization_id is not None and requested != row.organization_id)
    ):
        raise AccessDenied(key_id=row.id)
    if row.role is None:
        raise AccessDenied(key_id=row.id)
    return Principal(
        user_id=row.user_id,
        key_id=row.id,
        organization_id=_as_uuid(row.selected_organization_id),
        role=Role(row.role),
        bound_organization_id=row.organization_id,
        # Written at most once per interval, so that most requests stay free of writes.
        last_use_due=row.last_used_at is None or utcnow() - row.last_used_at >= last_used_interval,
    )


def _principal_query(selected: ColumnElement[Any]) -> Select[Any]:
    """The key with `lookup_id`, its user, and the user's role in the `selected` organization."""
    return (
        select(
            col(ApiKey.id),
            col(ApiKey.secret_hash),
            col(ApiKey.user_id),
            col(ApiKey.organization_id),
            col(ApiKey.revoked_at),
            col(ApiKey.last_used_at),
            selected.label("selected_organization_id"),
            col(Membership.role),
        )
        .join(User, col(User.id) == col(ApiKey.user_id))
        .outerjoin(
            Membership,
            and_(col(Membership.user_id) == col(ApiKey.user_id), col(Membership.organization_id) == selected),
        )
        .where(col(ApiKey.lookup_id) == bindparam("lookup_id"))
    )


# Built once, as every request runs one of them: building a statement costs more than running it.
_FOR_REQUESTED_ORGANIZATION = _principal_query(bindparam("requested", type_=Uuid()))
_FOR_DEFAULT_ORGANIZATION = _principal_query(
    func.coalesce(col(ApiKey.organization_id), col(User.default_organization_id))
)


def record_use(key_id: uuid.UUID) -> bool:
    """Best effort: note that the key was used now, unless another writer holds the lock (no
    wait: a request never waits for this, nor fails because of it). Whether it was written."""
    try:
        with db.writing(lock_timeout_ms=_NO_WAIT_MS) as conn:
            conn.execute(update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=utcnow()))
    except OperationalError:  # locked (SQLite busy, PostgreSQL lock timeout): next time
        return False
    return True


# A lock wait short enough to be no wait (PostgreSQL reads 0 as "wait forever").
_NO_WAIT_MS = 1


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
