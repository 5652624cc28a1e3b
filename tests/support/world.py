"""Test data, made through the product's own data layer (the functions the CLI calls)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row

from sessions_api.core import db
from sessions_api.core.retry import retried
from sessions_api.core.timestamps import format_utc
from sessions_api.models import (
    Device,
    Organization,
    Role,
    User,
    api_keys,
    devices,
    members,
    session_import,
    sessions,
    tenancy,
)


@dataclass
class Member:
    user: User
    personal: Organization
    secret: str
    key_id: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def acting_on(self, organization_id: object) -> dict[str, str]:
        return {**self.headers, "X-Organization-Id": str(organization_id)}


class World:
    """Builds users, organizations, keys, devices and sessions through the data layer."""

    def __init__(self) -> None:
        self._device: Device | None = None

    def member(
        self, email: str | None = None, *, of: Sequence[tuple[Organization, Role]] = (), bound_to: Any = None
    ) -> Member:
        user, personal = tenancy.create_user(email or f"user-{uuid.uuid4().hex[:8]}@example.com")
        for organization, role in of:
            members.add_member(organization.id, user.id, role)
        key, secret = api_keys.create_key(user.id, bound_to.id if bound_to is not None else None)
        return Member(user, personal, secret, key.id)

    def organization(self, name: str = "Team") -> Organization:
        return tenancy.create_organization(name)

    def device(self, **spec: str) -> Device:
        """A device for released sessions (shared), or a new one when `spec` describes it."""
        if spec:
            defaults = {"platform": "android", "type": "emulator", "name": "Pixel 9", "os_version": "15"}
            return devices.add_device(**{**defaults, **spec})
        if self._device is None:
            self._device = devices.add_device("android", "emulator", "Pixel 9", "15")
        return self._device

    def sessions(
        self,
        organization: Organization,
        user: User,
        created: Sequence[datetime | None],
        released: Sequence[datetime | None] | None = None,
    ) -> int:
        """Import one session per entry of `created` (None: now) through the import path.

        Without `released`, a session with a `created` instant is released a minute later and
        one created now stays live; each live session gets a device of its own.
        """
        lines = []
        for index, created_at in enumerate(created):
            if released is not None:
                released_at = released[index]
            else:
                released_at = created_at + timedelta(minutes=1) if created_at is not None else None
            device = self.device(name=f"Live {uuid.uuid4().hex[:6]}") if released_at is None else self.device()
            record = {"organization": str(organization.id), "user": str(user.id), "device": str(device.id)}
            if created_at is not None:
                record["createdAt"] = format_utc(created_at)
            if released_at is not None:
                record["releasedAt"] = format_utc(released_at)
            lines.append(json.dumps(record))
        return session_import.import_sessions(lines)


def create_session(new: sessions.NewSession) -> Row[Any]:
    """Insert one session as the data layer does, retrying a lost race for its instant;
    returns it as the API shows it."""

    def insert() -> Row[Any]:
        with db.writing() as conn:
            (session_id,) = sessions.insert_sessions(conn=conn, batch=[new])
            return sessions.session_view(conn=conn, organization_id=new.organization_id, session_id=session_id)

    return retried(insert, attempts=5, retry_if=sessions.is_instant_collision)
