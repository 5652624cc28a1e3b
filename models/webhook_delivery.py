"""Sending a claimed delivery: signed as Standard Webhooks says, POSTed outside any transaction
(`core.outbound`), and its attempt recorded on the writes' threads: by `deliver` at once, or
by the webhook sender with others (`webhooks.settle`).

Used by each process's webhook sender (`web.webhooks`) and by testWebhookEndpoint, which sends a
`webhook.test` event at once and answers with the attempt.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from sqlalchemy import Row

from sessions_api.core import db_threads, outbound, settings
from sessions_api.core.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_SECRETS_UNREADABLE
from sessions_api.models import webhooks
from sessions_api.models.api_keys import Principal
from sessions_api.models.errors import NotFound, Unprocessable

USER_AGENT = "sessions-api-webhooks/1"
logger = logging.getLogger(__name__)


async def deliver(claim: webhooks.Claim) -> Row[Any] | None:
    """Make the claimed attempt and record it; the recorded attempt, or None (see record_attempt)."""
    result = await attempt(claim)
    return await db_threads.write(webhooks.record_attempt, claim, result)


async def attempt(claim: webhooks.Claim, clients: outbound.Clients | None = None) -> outbound.AttemptResult:
    """Make the claimed attempt (reusing `clients`' connections, if given); the caller records it."""
    if claim.payload is None:
        return _event_expired(claim)
    if not claim.signing_secrets:
        return _secret_unreadable(claim)
    config = settings.current()
    body = claim.payload.encode()
    message_id, timestamp = str(claim.event_id), int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": outbound.signature_header(claim.signing_secrets, message_id, timestamp, body),
    }
    result = await outbound.post(
        claim.url,
        headers,
        body,
        timeout=config.webhook_timeout_seconds,
        max_response_bytes=config.webhook_max_response_bytes,
        allow_private=config.webhook_allow_private,
        allowed_ports=config.webhook_ports(),
        clients=clients,
    )
    WEBHOOK_ATTEMPTS.labels(webhooks.attempt_outcome(claim, result)).inc()
    return result


def _secret_unreadable(claim: webhooks.Claim) -> outbound.AttemptResult:
    """An attempt not made: only this endpoint's deliveries fail (and are retried as any failure)."""
    logger.error(
        "webhook endpoint %s: its signing secret cannot be unsealed with SESSIONS_API_SECRET_KEYS; "
        "its deliveries fail with secret_unreadable until this server has the key that sealed it",
        claim.endpoint_id,
    )
    WEBHOOK_SECRETS_UNREADABLE.inc()
    result = outbound.AttemptResult(None, outbound.Reason.SECRET_UNREADABLE, 0)
    WEBHOOK_ATTEMPTS.labels(webhooks.attempt_outcome(claim, result)).inc()
    return result


def _event_expired(claim: webhooks.Claim) -> outbound.AttemptResult:
    """An attempt not made: the event is no longer in the log, so there is nothing to send."""
    logger.warning(
        "webhook delivery %s to endpoint %s: its event left the log (SESSIONS_API_EVENT_RETENTION_DAYS) "
        "before it was delivered; it fails with event_expired",
        claim.delivery_id,
        claim.endpoint_id,
    )
    result = outbound.AttemptResult(None, outbound.Reason.EVENT_EXPIRED, 0)
    WEBHOOK_ATTEMPTS.labels(webhooks.attempt_outcome(claim, result)).inc()
    return result


async def send_test(caller: Principal, endpoint_id: uuid.UUID) -> Row[Any]:
    """Send a `webhook.test` event to the endpoint now; the attempt, as the deliveries list shows it."""
    claim = await db_threads.write(webhooks.claim_test, caller, endpoint_id)
    attempt = await deliver(claim)
    if attempt is None:  # the endpoint was deleted meanwhile
        raise NotFound("No webhook endpoint with this id exists in the selected organization.")
    return attempt


async def vet_url(url: str) -> None:
    """Unprocessable (`unsafe_webhook_url`) for a URL webhooks may not go to: not https, or a
    host that is or resolves to an address that is not public (unless private targets are
    allowed). A name that does not resolve now is accepted: every delivery checks again."""
    config = settings.current()
    allow_private = config.webhook_allow_private
    try:
        target = outbound.parse_target(url, allow_private=allow_private, allowed_ports=config.webhook_ports())
        await outbound.resolve(target, allow_private=allow_private)
    except outbound.UnsafeTarget as exc:
        raise Unprocessable("unsafe_webhook_url", str(exc)) from None
    except (OSError, TimeoutError, UnicodeError):
        return
