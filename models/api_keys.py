"""API keys: creation, revocation, and the lookup behind every authenticated request.

A key reads `sapi_<lookup id>_<secret>`. The lookup id (64 random bits) finds the row; the
secret (256 random bits) is checked against its stored SHA-256 in constant time. A fast hash
is the right one here: the secret is random, not a password, so it cannot be guessed. The
`prefix` the API shows, `sapi_<lookup id>`, names a key without its secret.

A key works until it is revoked or expires; a key bound to an organization also stops when
its user is no longer a member of it. `create_key` and `revoke_key` are the operator's (the
command line's, recorded as such in the audit log); the API's callers manage their own keys
with `create_own_key`, `revoke_visible_key` and `list_keys`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    Uuid,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Mapped, aliased
from sqlmodel import col

from sessions_api.core import db, settings
from sessions_api.core.compiled_reads import CompiledRead
from sessions_api.core.ids import parse_uuid
from sessions_api.core.timestamps import utcnow
from sessions_api.models import audit
from sessions_api.models.as_text import rfc3339_text, uuid_text
from sessions_api.models.errors import AccessDenied, Forbidden, NotFound, Unprocessable, limit_reached
from sessions_api.models.instants import InstantAllocator, take_turns
from sessions_api.models.paging import Page, read_page
from sessions_api.models.tables import ApiKey, AuditEventType, Membership, Organization, Origin, Role, User
from sessions_api.models.text import clean_name

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
    key_expires_at: datetime | None = None  # when the key in use stops working, if it does

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(Origin.api, self.user_id, self.key_id)


def create_key(
    user_id: uuid.UUID,
    organization_id: uuid.UUID | None = None,
    name: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """The operator's: create a key; returns it with its secret, which is not stored and
    cannot be shown again."""
    with db.writing() as conn:
        if not _exists(conn=conn, where=col(User.id) == user_id):
            raise NotFound(f"no user with id {user_id}")
        if organization_id is not None and not _exists(conn=conn, where=col(Organization.id) == organization_id):
            raise NotFound(f"no organization with id {organization_id}")
        return _insert_key(
            conn=conn,
            actor=audit.OPERATOR,
            user_id=user_id,
            organization_id=organization_id,
            name=name,
            expires_at=expires_at,
        )


def create_own_key(
    caller: Principal, name: str, organization_id: uuid.UUID | None, expires_at: datetime | None
) -> tuple[Row[Any], str]:
    """A key of the caller's own, as the API shows it, and its secret (shown this once).

    A key cannot outlive or outreach the key that made it: with an expiring key, the new key
    expires no later (an earlier `expires_at` stays; a later one, or none, becomes the maker's),
    and with a bound key, the new key is bound to the same organization (by default too).
    Revoking a key does not revoke the keys it made: each is a key of its own, which its user
    lists and revokes, and the audit log names the key that made it (`key.created`'s actor)."""
    bound = caller.bound_organization_id
    organization_id = organization_id if organization_id is not None else bound
    if bound is not None and organization_id != bound:
        raise Forbidden("A key bound to an organization can only create keys bound to that organization.")
    maker_expires = caller.key_expires_at
    if maker_expires is not None and (expires_at is None or expires_at > maker_expires):
        expires_at = maker_expires
    with db.writing() as conn:
        take_turns(conn=conn, scopes=["api_keys"])  # as _insert_key does: the count cannot move meanwhile
        cap = settings.current().max_api_keys_per_user
        if _live_keys_of(conn=conn, user_id=caller.user_id) >= cap:
            raise limit_reached("live API keys per user", cap, "SESSIONS_API_MAX_API_KEYS_PER_USER")
        key, secret = _insert_key(
            conn=conn,
            actor=caller.actor,
            user_id=caller.user_id,
            organization_id=organization_id,
            name=name,
            expires_at=expires_at,
        )
        return _key_view(conn=conn, where=col(ApiKey.id) == key.id), secret


def _insert_key(
    *,
    conn: Connection,
    actor: audit.Actor,
    user_id: uuid.UUID,
    organization_id: uuid.UUID | None,
    name: str | None,
    expires_at: datetime | None,
) -> tuple[ApiKey, str]:
    """Insert a new key with a unique `created_at`, recording it; returns it and its secret."""
    if expires_at is not None and expires_at <= utcnow():
        raise Unprocessable("expiry_in_past", "expiresAt must be in the future.")
    if name is not None:
        name = clean_name(name, "key name")
    # Key creators take turns for the instant; binders also with changes of that organization's
    # members, so that no key is bound for a user who is leaving it.
    take_turns(conn=conn, scopes=["api_keys", *([f"memberships:{organization_id}"] if organization_id else [])])
    if organization_id is not None and not _exists(
        conn=conn, where=and_(col(Membership.organization_id) == organization_id, col(Membership.user_id) == user_id)
    ):
        raise Forbidden("A key can only be bound to an organization its user is a member of.")
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        lookup_id=secrets.token_hex(8),
        secret_hash=_hash(secret),
        user_id=user_id,
        organization_id=organization_id,
        name=name,
        expires_at=expires_at,
        created_at=InstantAllocator(conn, col(ApiKey.created_at)).next(),
    )
    conn.execute(insert(ApiKey).values(key.model_dump()))
    created = {"name": name, "user": user_id, "organization": organization_id, "expiresAt": expires_at}
    audit.record(
        conn=conn,
        events=[_key_event(conn=conn, key=key, type=AuditEventType.key_created, actor=actor, after=created)],
    )
    return key, f"{KEY_PREFIX}{key.lookup_id}_{secret}"


def _live_keys_of(*, conn: Connection, user_id: uuid.UUID) -> int:
    """The user's keys that still work or may (not revoked, not expired)."""
    now = utcnow()
    live = and_(
        col(ApiKey.user_id) == user_id,
        col(ApiKey.revoked_at).is_(None),
        or_(col(ApiKey.expires_at).is_(None), col(ApiKey.expires_at) > now),
    )
    return int(conn.execute(select(func.count()).where(live)).scalar_one())


def _exists(*, conn: Connection, where: ColumnElement[bool]) -> bool:
    return conn.execute(select(1).where(where).limit(1)).first() is not None


def revoke_key(key_id: uuid.UUID) -> ApiKey:
    """The operator's: revoke a key; it fails from the next request on. Revoking twice keeps
    the first time."""
    with db.writing() as conn:
        revoke_keys(conn=conn, actor=audit.OPERATOR, where=col(ApiKey.id) == key_id)
        row = conn.execute(select(ApiKey).where(col(ApiKey.id) == key_id)).first()
    if row is None:
        raise NotFound(f"no API key with id {key_id}")
    return ApiKey.model_validate(row._mapping)


def revoke_visible_key(caller: Principal, key_id: uuid.UUID) -> Row[Any]:
    """Revoke a key the caller may see (see `_visible_to`); NotFound for any other, exactly as
    for an id that does not exist. Revoking twice keeps the first time."""
    visible = and_(col(ApiKey.id) == key_id, _visible_to(caller))
    with db.writing() as conn:
        revoke_keys(conn=conn, actor=caller.actor, where=visible)
        return _key_view(conn=conn, where=visible)


def revoke_keys(*, conn: Connection, actor: audit.Actor, where: ColumnElement[bool]) -> None:
    """Revoke the live keys `where` selects, recording each revocation."""
    revoked = conn.execute(
        update(ApiKey).where(where, col(ApiKey.revoked_at).is_(None)).values(revoked_at=utcnow()).returning(ApiKey)
    ).all()
    audit.record(
        conn=conn,
        events=[
            _key_event(
                conn=conn,
                key=ApiKey.model_validate(row._mapping),
                type=AuditEventType.key_revoked,
                actor=actor,
                after={"revokedAt": row.revoked_at},
            )
            for row in revoked
        ],
    )


def _key_event(
    *, conn: Connection, key: ApiKey, type: AuditEventType, actor: audit.Actor, after: audit.Snapshot
) -> audit.Event:
    """An event about a key, in the organization it is bound to, else its user's Personal one."""
    organization_id = key.organization_id
    if organization_id is None:
        organization_id = conn.execute(
            select(col(User.default_organization_id)).where(col(User.id) == key.user_id)
        ).scalar_one()
    return audit.Event(organization_id, type, actor, audit.TargetKind.api_key, key.id, after=after)


class KeyScope(enum.StrEnum):
    user = "user"  # the caller's own keys
    organization = "organization"  # every key bound to the organization (admins)


def list_keys(caller: Principal, scope: KeyScope, limit: int, before: datetime | None) -> Page:
    """Up to `limit` keys created strictly before `before`, newest first: the caller's own, or
    (for an admin) every key bound to the organization the caller acts on."""
    if scope is KeyScope.user:
        where = _own(caller)
    elif caller.role is Role.admin:
        where = col(ApiKey.organization_id) == caller.organization_id
    else:
        raise Forbidden(f"Your role in this organization ({caller.role.value}) may not list its keys; it takes admin.")
    return read_page(_KEY_VIEW, col(ApiKey.created_at), limit, before, where)


def _own(caller: Principal) -> ColumnElement[bool]:
    """The caller's own keys; with a bound key, only those bound to the same organization."""
    own = col(ApiKey.user_id) == caller.user_id
    if caller.bound_organization_id is not None:
        return and_(own, col(ApiKey.organization_id) == caller.bound_organization_id)
    return own


def _visible_to(caller: Principal) -> ColumnElement[bool]:
    """The keys a caller may see and revoke: their own, and for an admin of the organization
    they act on, every key bound to it."""
    if caller.role is Role.admin:
        return or_(_own(caller), col(ApiKey.organization_id) == caller.organization_id)
    return _own(caller)


# What the API answers with, ids and instants already its text (see models.as_text).
_KEY_COLUMNS: tuple[ColumnElement[Any] | Mapped[Any], ...] = (
    uuid_text(col(ApiKey.id)).label("id"),
    col(ApiKey.name),
    (literal(KEY_PREFIX) + col(ApiKey.lookup_id)).label("prefix"),
    uuid_text(col(ApiKey.user_id)).label("user_id"),
    uuid_text(col(ApiKey.organization_id)).label("organization_id"),
    rfc3339_text(col(ApiKey.created_at)).label("created_at"),
    rfc3339_text(col(ApiKey.last_used_at)).label("last_used_at"),
    rfc3339_text(col(ApiKey.expires_at)).label("expires_at"),
    rfc3339_text(col(ApiKey.revoked_at)).label("revoked_at"),
)
_KEY_VIEW = select(*_KEY_COLUMNS)


def _key_view(*, conn: Connection, where: ColumnElement[bool]) -> Row[Any]:
    row = conn.execute(_KEY_VIEW.where(where)).first()
    if row is None:
        raise NotFound("No API key with this id exists among yours.")
    return row


_CALLER_COLUMNS: tuple[ColumnElement[Any] | Mapped[Any], ...] = (
    uuid_text(col(User.id)).label("user_id"),
    col(User.email),
    col(User.name),
    uuid_text(col(User.default_organization_id)).label("default_organization_id"),
    uuid_text(col(ApiKey.id)).label("key_id"),
    col(ApiKey.name).label("key_name"),
    uuid_text(col(ApiKey.organization_id)).label("key_organization_id"),
)
_CALLER = select(*_CALLER_COLUMNS).join(ApiKey, col(ApiKey.user_id) == col(User.id))


def describe_caller(caller: Principal) -> Row[Any]:
    """The caller's user and the key in use, as the API shows them."""
    with db.reading() as conn:
        return conn.execute(_CALLER.where(col(ApiKey.id) == caller.key_id)).one()


def is_well_formed(token: str) -> bool:
    """Whether `token` is shaped like a key at all (what can be refused without a lookup)."""
    return _KEY_FORMAT.fullmatch(token) is not None


async def authenticate(
    token: str, requested_organization: str | None, last_used_interval: timedelta
) -> Principal | None:
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
        row = await _FOR_REQUESTED_ORGANIZATION.first({"lookup_id": lookup_id, "requested": requested})
    else:
        row = await _FOR_DEFAULT_ORGANIZATION.first({"lookup_id": lookup_id})
    if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)) or not _is_live(row):
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
        key_expires_at=row.expires_at,
        # Written at most once per interval, so that most requests stay free of writes.
        last_use_due=row.last_used_at is None or utcnow() - row.last_used_at >= last_used_interval,
    )


def _is_live(key: Row[Any]) -> bool:
    """Not revoked, not expired, and if bound, its user still a member of that organization."""
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= utcnow()):
        return False
    return key.organization_id is None or bool(key.member_of_bound_organization)


_BOUND_MEMBERSHIP = aliased(Membership, name="bound_membership")


def _principal_query(selected: ColumnElement[Any]) -> Select[Any]:
    """The key with `lookup_id`, its user, the user's role in the `selected` organization, and
    whether they are still a member of the organization the key is bound to."""
    member_of_bound = exists().where(
        col(_BOUND_MEMBERSHIP.user_id) == col(ApiKey.user_id),
        col(_BOUND_MEMBERSHIP.organization_id) == col(ApiKey.organization_id),
    )
    return (
        select(
            col(ApiKey.id),
            col(ApiKey.secret_hash),
            col(ApiKey.user_id),
            col(ApiKey.organization_id),
            col(ApiKey.revoked_at),
            col(ApiKey.expires_at),
            col(ApiKey.last_used_at),
            selected.label("selected_organization_id"),
            col(Membership.role),
            member_of_bound.label("member_of_bound_organization"),
        )
        .join(User, col(User.id) == col(ApiKey.user_id))
        .outerjoin(
            Membership,
            and_(col(Membership.user_id) == col(ApiKey.user_id), col(Membership.organization_id) == selected),
        )
        .where(col(ApiKey.lookup_id) == bindparam("lookup_id"))
    )


# Built and compiled once, as every request runs one of them (core.compiled_reads).
_FOR_REQUESTED_ORGANIZATION = CompiledRead(_principal_query(bindparam("requested", type_=Uuid())))
_FOR_DEFAULT_ORGANIZATION = CompiledRead(
    _principal_query(func.coalesce(col(ApiKey.organization_id), col(User.default_organization_id)))
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
