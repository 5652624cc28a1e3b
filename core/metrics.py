"""The process's Prometheus metrics (prometheus-client), defined once for every layer.

Under `sessions-api serve` every worker writes its values to files in
`PROMETHEUS_MULTIPROC_DIR` (set before any worker starts), and `/metrics` sums them: each
gauge says how (`multiprocess_mode`). No label ever carries an organization, user, key or
session id: operations are labelled by operationId, never by path.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "sessions_api_requests",
    "Requests answered, by operationId (or what else answered), method and status.",
    ["operation", "method", "status"],
)
REQUEST_DURATION = Histogram(
    "sessions_api_request_duration_seconds",
    "Time from the request's arrival to its answer, by operationId.",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DB_CALLS_WAITING = Gauge(
    "sessions_api_db_calls_waiting",
    "Database calls waiting for a thread, by pool (reads, writes, heavy).",
    ["pool"],
    multiprocess_mode="livesum",
)
DB_CALLS_IN_USE = Gauge(
    "sessions_api_db_calls_in_use",
    "Database calls running, by pool (reads, writes, heavy).",
    ["pool"],
    multiprocess_mode="livesum",
)
EXPIRY_SWEEPS = Counter("sessions_api_expiry_sweeps", "Expiry sweeps run (each process runs its own).")
EXPIRED_SESSIONS_RELEASED = Counter(
    "sessions_api_expired_sessions_released", "Sessions released by the expiry sweep at their expiresAt."
)
KEY_USE_SKIPPED = Counter(
    "sessions_api_key_last_use_skipped",
    "Writes of an API key's lastUsedAt skipped because another writer held the lock (best effort).",
)
RATE_LIMITED = Counter(
    "sessions_api_rate_limited", "Requests refused with 429, by budget (key, start, auth-failures).", ["budget"]
)
RATE_LIMIT_STORAGE_ERRORS = Counter(
    "sessions_api_rate_limit_storage_errors",
    "Rate-limit storage failures (Redis away): the requests were served without limits.",
)
WEBHOOK_ATTEMPTS = Counter(
    "sessions_api_webhook_attempts",
    "Webhook delivery attempts, by outcome: succeeded, retrying (failed, tried again later), failed (no retry left).",
    ["outcome"],
)
WEBHOOK_SECRETS_UNREADABLE = Counter(
    "sessions_api_webhook_secrets_unreadable",
    "Webhook attempts not made: this server cannot unseal the endpoint's signing secret (the log names the endpoint).",
)
ARTIFACTS_ENDED = Counter(
    "sessions_api_artifacts_ended",
    "Artifacts the sweeps ended, by how: expired (past their retention), failed (an upload never "
    "completed), orphan_removed (an object no artifact names, deleted).",
    ["how"],
)
ARTIFACT_UPLOAD_BYTES = Counter(
    "sessions_api_artifact_upload_bytes",
    "Bytes of artifacts uploaded through this server (the file store) and stored.",
)
QUEUE_WAIT = Histogram(
    "sessions_api_queue_wait_seconds",
    "How long session requests waited in the queue, by how they left it: started or timed_out.",
    ["outcome"],
    buckets=(0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0),
)
