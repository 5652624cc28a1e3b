"""SQLModel tables and the queries over them: the data layer of the Sessions API."""

from models.tables import (
    ApiKey,
    Device,
    IdempotencyRecord,
    Membership,
    Organization,
    Platform,
    Role,
    SessionRecord,
    User,
)

__all__ = [
    "ApiKey", "Device", "IdempotencyRecord", "Membership", "Organization", "Platform", "Role", "SessionRecord", "User",
]
