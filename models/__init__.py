"""The data layer (floor 2): SQLModel tables and one module per domain.

The tables (`tables`, with their column types in `types`); organizations and users
(`tenancy`), memberships (`members`), API keys and the caller they identify (`api_keys`),
invitations (`invitations`), the audit log (`audit`); the fleet (`devices`); sessions
(`sessions`), their leases (`leases`), their facts (`session_facts`), their import
(`session_import`), each organization's plan and live view (`plans`), queued starts
(`queue`), the decisions that serve them (`queue_serving`) and the long-polls that wait on them
(`queue_waits`), how grants end with their maker's or holder's right (`grant_ends`), usage in device minutes
(`usage`); webhooks: endpoints and the outbox (`webhooks`) and one delivery's attempt
(`webhook_delivery`); the event log every change writes to and listEvents reads (`events`) and the streams that
follow it (`event_streams`);
session artifacts in an object store (`artifacts`, a package: a domain of
several modules gets its own). Shared pieces: instants unique within a scope and writers' turns
(`instants`), cursor paging (`paging`), ids and instants as the API's text (`as_text`), names
callers give (`text`), the errors the HTTP layer maps (`errors`), the schema version
(`schema_version`), and what metrics read at each scrape (`gauges`).

It imports only the infrastructure (`sessions_api.core`), never the HTTP layer or the CLI.
Public functions (the ones handlers and the CLI call) open one transaction each
(`core.db.reading()` or `core.db.writing()`); the functions they call take that connection
as a required keyword (`def insert_sessions(*, conn, batch)`). A new domain gets a module of
its own here, its tables in `tables`, and a migration.
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
