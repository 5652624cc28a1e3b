"""The data layer (floor 2): SQLModel tables and one module per domain.

It imports only the infrastructure (`sessions_api.core`), never the HTTP layer or the CLI.
Public functions (the ones handlers and the CLI call) open one transaction each
(`core.db.reading()` or `core.db.writing()`); the functions they call take that connection
as a required keyword (`def insert_sessions(*, conn, batch)`). A new domain gets a module of
its own here (`audit.py`, `webhooks.py`, ...), its tables in `tables.py`, and a migration.
"""

from sessions_api.models.tables import (
    ApiKey,
    AuditEvent,
    AuditEventType,
    Device,
    IdempotencyRecord,
    Invitation,
    InvitationStatus,
    Membership,
    Organization,
    Origin,
    Platform,
    Role,
    SessionRecord,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = [
    "ApiKey",
    "AuditEvent",
    "AuditEventType",
    "Device",
    "IdempotencyRecord",
    "Invitation",
    "InvitationStatus",
    "Membership",
    "Organization",
    "Origin",
    "Platform",
    "Role",
    "SessionRecord",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
