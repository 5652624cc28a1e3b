"""One settings object, read from environment variables (pydantic-settings).

Every field is read from `SESSIONS_API_<FIELD NAME>` unless it names another variable
(`DATABASE_URL`); an empty variable counts as unset. The app factory and the CLI read the
environment once (`Settings.from_env()`); each app keeps its own and binds them to the
context of its work (`bind()`), where code below the HTTP layer asks `current()`.
"""

from __future__ import annotations

import re
from contextvars import ContextVar, Token
from pathlib import Path
from typing import Annotated, Any, Literal

from limits import parse_many
from pydantic import AliasChoices, Field, PositiveInt, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sessions_api.core.sealing import valid_keys

ENV_PREFIX = "SESSIONS_API_"
# SESSIONS_API_METRICS_LISTEN's value for /metrics on the API's own port.
METRICS_ON_API_PORT = "api"


class Settings(BaseSettings):
    """Every knob of the server. Add one as a field here and a row in the table of
    docs/operators/configuration.md (tests/package/test_docs.py compares them)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        env_ignore_empty=True,
        populate_by_name=True,
        extra="ignore",
    )

    database_url: Annotated[str, Field(validation_alias=AliasChoices("DATABASE_URL", "database_url"))] = (
        "sqlite:///./sessions.db"
    )
    # Validating every response against the spec costs ~13x throughput: tests turn it on.
    validate_responses: bool = False
    log_level: str = "INFO"
    # `plain`: one readable line per record; `json`: one JSON object per line, for machines.
    log_format: Literal["plain", "json"] = "plain"
    # Request bodies larger than this answer 413 (counted as they arrive, chunked ones too);
    # a request line and headers larger than `max_header_bytes` answer 431 (under `serve`);
    # JSON nested deeper than `max_json_depth` answers 400.
    max_body_bytes: PositiveInt = 64 * 1024
    max_header_bytes: Annotated[int, Field(ge=1024)] = 32 * 1024
    max_json_depth: Annotated[int, Field(ge=2, le=512)] = 32
    # Rate limits in the `limits` library's notation (`20/second;600/minute`), or `off`: each
    # API key's requests, each user's (all keys) and each organization's requests, each
    # organization's session starts, failed authentications per client address. Counted in
    # `rate_limit_storage` (`memory://`: this process; `redis://`: every worker and host),
    # whose keys start with `rate_limit_key_prefix` and whose calls give up after
    # `rate_limit_storage_timeout_ms` (then requests are served unlimited).
    rate_limit: str = "6000/minute"
    rate_limit_per_user: str = "12000/minute"
    rate_limit_per_organization: str = "30000/minute"
    start_rate_limit: str = "1200/minute"
    auth_failure_limit: str = "30/minute"
    rate_limit_storage: str = "memory://"
    rate_limit_key_prefix: Annotated[str, Field(min_length=1, max_length=64)] = "sessions_api"
    rate_limit_storage_timeout_ms: PositiveInt = 250
    # Addresses (or CIDR networks), comma-separated, of proxies whose X-Forwarded-For names the
    # client (under `serve`); from anyone else the header is ignored.
    trusted_proxies: str = ""
    # Prometheus metrics, fleet-wide counts across tenants: on a listener of their own at
    # `metrics_listen` (`HOST:PORT`, by default the loopback's 9464, the scraper's side of a
    # pod), never on the API's port where tenants reach it, unless it is `api` (for a setup that
    # guards /metrics otherwise); off when `metrics` is false.
    metrics: bool = True
    metrics_listen: str = "127.0.0.1:9464"
    # Seconds between writes of an API key's `lastUsedAt`, to keep reads write-free.
    key_last_used_interval: Annotated[int, Field(ge=0)] = 60
    sqlite_busy_timeout_ms: Annotated[int, Field(ge=0)] = 5000
    # Connection pool, per process: size + overflow bounds the connections one worker opens;
    # a request that waits longer than the pool timeout (seconds) for one answers 503.
    db_pool_size: PositiveInt = 10
    db_max_overflow: Annotated[int, Field(ge=0)] = 10
    db_pool_timeout: Annotated[float, Field(gt=0)] = 5.0
    # Threads per process that run database reads, and those that run writes (never the same:
    # a write waiting for a lock holds up no read); None: see read_threads() and write_threads().
    db_threads: PositiveInt | None = None
    db_write_threads: PositiveInt | None = None
    # PostgreSQL only: no statement runs longer than this; no write waits longer than that for
    # a lock (SQLite's is the busy timeout); connecting gives up after db_connect_timeout (s).
    db_statement_timeout_ms: PositiveInt = 10_000
    # Heavy reads (core.heavy_reads: reports, filters on several tags): the time limit (s) of
    # one, past which it answers 503 `report_timeout`, and how many one organization runs at
    # once in a process, past which 429 `too_many_heavy_reads`.
    report_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 10.0
    max_heavy_reads_per_organization: Annotated[int, Field(ge=1, le=100)] = 2
    db_lock_timeout_ms: PositiveInt = 5000
    db_connect_timeout: PositiveInt = 5
    # Sessions: the duration when none is asked for, the most one may ask for, how many live
    # sessions an organization may hold, and how often (s) expired sessions are released.
    default_session_minutes: PositiveInt = 60
    max_session_minutes: PositiveInt = 240
    max_live_sessions: PositiveInt = 50
    # The plan of organizations created through the API (their users' own, self-service): so few
    # live sessions that making organizations does not multiply a user's share of the fleet.
    # The operator gives any organization its own plan (`sessions-api org plan`).
    self_service_max_live_sessions: PositiveInt = 2
    # Queued starts (models.queue): how many requests an organization may have waiting (the
    # default plan's, the self-service plan's), the longest a request may wait (s), how often
    # (s) each process serves the queue when nothing wakes it (a release in the process does at
    # once), and how often (s) a long-poll (`Prefer: wait`) looks again at its request.
    max_queued_sessions: Annotated[int, Field(ge=0, le=10_000)] = 100
    self_service_max_queued_sessions: Annotated[int, Field(ge=0, le=10_000)] = 10
    max_queue_wait_seconds: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 1800
    queue_poll_seconds: Annotated[float, Field(gt=0)] = 1.0
    long_poll_check_seconds: Annotated[float, Field(gt=0, le=5)] = 0.1
    # How many long-polls (and, later, event streams) one API key and one organization may hold
    # open at once in a process; past either: 429 `too_many_waits`.
    max_waits_per_key: Annotated[int, Field(ge=1, le=1000)] = 5
    max_waits_per_organization: Annotated[int, Field(ge=1, le=10_000)] = 50
    # Caps on what one caller can create without end (tenants stay apart): organizations one
    # user creates through the API, live API keys one user holds (made through the API), and
    # webhook endpoints per organization. Past a cap: 409 `limit_reached`.
    max_organizations_per_user: PositiveInt = 10
    max_api_keys_per_user: PositiveInt = 100
    max_webhook_endpoints: PositiveInt = 20
    # Pending invitations per organization (past it: 409 `limit_reached`).
    max_pending_invitations: PositiveInt = 100
    expiry_sweep_seconds: Annotated[float, Field(gt=0)] = 10.0
    # SQLite keeps no query planner statistics by itself: each server process gathers them
    # this often (s), so that pages keep reading the right index as the history grows.
    statistics_refresh_seconds: Annotated[float, Field(gt=0)] = 3600.0
    # Webhooks (models.webhooks, web.webhooks): one attempt's time limit (s), the waits before
    # each retry (`5s,5m,30m,2h`: seconds, minutes, hours or days; jittered), whether targets on
    # loopback, private, link-local or reserved addresses (and plain http) are allowed, how
    # often (s) each process looks for due deliveries, how many attempts one process makes to
    # one endpoint at once, how much of a response it reads, how long (s) a rotated secret
    # still signs, and after how long (s) of only failures an endpoint is disabled.
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    webhook_retry_schedule: str = "5s,5m,30m,2h,5h,10h,10h"
    # Fernet keys, comma-separated, that seal the webhook signing secrets at rest (the first
    # seals, each opens: core.sealing); empty: stored as they are, and `serve` warns.
    secret_keys: str = Field(default="", repr=False)
    webhook_allow_private: bool = False
    # Comma-separated ports webhook URLs may name (`443,8443`); empty: any port.
    webhook_allowed_ports: str = ""
    webhook_poll_seconds: Annotated[float, Field(gt=0)] = 1.0
    webhook_endpoint_concurrency: Annotated[int, Field(ge=1, le=100)] = 16
    webhook_slow_answer_seconds: Annotated[float, Field(gt=0, le=300)] = 1.0
    webhook_max_response_bytes: Annotated[int, Field(ge=0, le=1024 * 1024)] = 4096
    webhook_rotation_overlap_seconds: Annotated[float, Field(ge=0)] = 24 * 3600.0
    webhook_disable_after_seconds: Annotated[float, Field(gt=0)] = 5 * 24 * 3600.0

    # Session artifacts (models.artifacts): where their bytes are kept (`file://DIRECTORY`, or
    # `s3://BUCKET/PREFIX` with `s3_endpoint_url` and `s3_region` and the AWS credential chain;
    # empty: `artifacts/` beside the SQLite database, else in the working directory), the URL
    # clients reach this server at (the file store's transfer URLs; empty: paths on this
    # server), how long (s) an upload or download URL lives, the largest artifact (bytes), the
    # most per session, how long an available one is kept (days, fractions allowed) unless its
    # plan says otherwise, how many bytes an organization may keep (the default and the
    # self-service plan's), and how long (s) after its URL expired an upload may still complete.
    artifact_store: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    public_url: str = ""
    artifact_url_ttl_seconds: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 900
    max_artifact_bytes: Annotated[int, Field(ge=1, le=5 * 1024**4)] = 2 * 1024**3
    max_artifacts_per_session: Annotated[int, Field(ge=1, le=10_000)] = 100
    artifact_retention_days: Annotated[float, Field(gt=0, le=36_500)] = 30.0
    max_storage_bytes: Annotated[int, Field(ge=0)] = 50 * 1024**3
    self_service_max_storage_bytes: Annotated[int, Field(ge=0)] = 5 * 1024**3
    artifact_upload_grace_seconds: Annotated[float, Field(ge=0)] = 3600.0
    # The event log (models.events): how long an event is kept (days, fractions allowed); a
    # stream's comment line every `stream_heartbeat_seconds` (proxies close idle connections),
    # and its end after `stream_max_seconds` (clients resume with Last-Event-ID).
    event_retention_days: Annotated[float, Field(gt=0, le=36_500)] = 30.0
    stream_heartbeat_seconds: Annotated[float, Field(gt=0, le=3600)] = 15.0
    stream_max_seconds: Annotated[float, Field(gt=0, le=24 * 3600)] = 300.0

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @classmethod
    def from_env(cls) -> Settings:
        """The settings the environment gives; ValueError naming each bad variable."""
        try:
            return cls()
        except ValidationError as exc:
            raise ValueError("; ".join(_describe(error) for error in exc.errors())) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied and validated (the environment is not read again)."""
        return type(self).model_validate({**self.model_dump(), **changes})

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def artifact_store_url(self) -> str:
        """`artifact_store`, or by default the folder `artifacts` beside the SQLite database
        (in the working directory for PostgreSQL or an in-memory database)."""
        if self.artifact_store:
            return self.artifact_store
        database = self.database_url.split("///", 1)[1] if self.is_sqlite and "///" in self.database_url else ""
        if database and not database.startswith(":memory:") and "mode=memory" not in database:
            folder = Path(database.split("?", 1)[0]).parent
        else:
            folder = Path(".")
        return f"file://{folder / 'artifacts'}"

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", value):
            raise ValueError("must be an http or https URL without a query (https://api.example.com)")
        return value.rstrip("/")

    @field_validator("artifact_store")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if value and not re.fullmatch(r"file://.+|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", value):
            raise ValueError("must be file://DIRECTORY or s3://BUCKET/PREFIX")
        return value

    def read_threads(self) -> int:
        """One on SQLite, whose work runs in this process: more threads only take turns at the
        GIL, and at 16 requests in flight one thread served a 100-session page for half the
        CPU of anyio's default 40 (BENCHMARKS.md). Elsewhere the pool size: the database works
        in its own process, and a call holds one connection at a time."""
        if self.db_threads is not None:
            return self.db_threads
        return 1 if self.is_sqlite else self.db_pool_size

    def heavy_read_threads(self) -> int:
        """Two on SQLite (its statements leave the GIL while they step), else the reads' count:
        heavy reads never take the threads of bounded reads or writes."""
        return 2 if self.is_sqlite else self.read_threads()

    def write_threads(self) -> int:
        """One on SQLite, which lets one writer in at a time anyway; elsewhere the overflow of the
        pool, so that reads and writes together never wait for a connection by default."""
        if self.db_write_threads is not None:
            return self.db_write_threads
        return 1 if self.is_sqlite else max(1, self.db_max_overflow)

    def metrics_address(self) -> tuple[str, int] | None:
        """The (host, port) of the metrics' own listener; None when they are on the API's port."""
        if self.metrics_listen == METRICS_ON_API_PORT:
            return None
        host, _, port = self.metrics_listen.rpartition(":")
        return host or "0.0.0.0", int(port)

    @field_validator(
        "rate_limit", "rate_limit_per_user", "rate_limit_per_organization", "start_rate_limit", "auth_failure_limit"
    )
    @classmethod
    def _limits_notation(cls, value: str) -> str:
        if value.strip().lower() != "off":
            try:
                parse_many(value)
            except ValueError:
                raise ValueError("must be limits like 20/second;600/minute, or off") from None
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _retry_schedule(cls, value: str) -> str:
        parse_durations(value)
        return value

    @field_validator("secret_keys")
    @classmethod
    def _fernet_keys(cls, value: str) -> str:
        try:
            return valid_keys(value)
        except (ValueError, TypeError):
            raise ValueError("must be Fernet keys (Fernet.generate_key()), comma-separated") from None

    @field_validator("webhook_allowed_ports")
    @classmethod
    def _ports(cls, value: str) -> str:
        ports = [item.strip() for item in value.split(",") if item.strip()]
        if not all(port.isdigit() and 0 < int(port) < 65536 for port in ports):
            raise ValueError("must be ports from 1 to 65535, comma-separated (443,8443), or empty for any")
        return value

    def webhook_ports(self) -> frozenset[int]:
        """The ports webhook URLs may name; empty: any."""
        return frozenset(int(item) for item in self.webhook_allowed_ports.split(",") if item.strip())

    def webhook_retry_delays(self) -> list[float]:
        """The waits (s) before each retry of a webhook delivery, in order."""
        return parse_durations(self.webhook_retry_schedule)

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage_uri(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://", "redis+unix://", "redis+sentinel://")):
            raise ValueError("must be memory:// or a redis:// URI (redis://host:port/db)")
        return value

    @property
    def rate_limits_shared(self) -> bool:
        return not self.rate_limit_storage.startswith("memory://")

    def trusted_proxy_list(self) -> list[str]:
        return [address.strip() for address in self.trusted_proxies.split(",") if address.strip()]

    @field_validator("metrics_listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        if value != METRICS_ON_API_PORT:
            _, colon, port = value.rpartition(":")
            if not colon or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"must be HOST:PORT, for example 127.0.0.1:9464, or {METRICS_ON_API_PORT}")
        return value


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_durations(text: str) -> list[float]:
    """`5s,5m,30m,2h` as seconds; empty (no retries) or `none` is []. ValueError otherwise."""
    if text.strip().lower() in ("", "none"):
        return []
    delays = []
    for item in text.split(","):
        match = _DURATION.fullmatch(item.strip())
        if match is None:
            raise ValueError("must be durations like 5s,5m,30m,2h (units ms, s, m, h, d), or none")
        delays.append(float(match[1]) * _UNIT_SECONDS[match[2]])
    if len(delays) > 50:
        raise ValueError("must list at most 50 retries")
    return delays


def env_name(field: str) -> str:
    """The environment variable a field is read from."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return ENV_PREFIX + field.upper()


def _describe(error: Any) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    name = env_name(field) if field in Settings.model_fields else field
    shown = "" if field in _SECRET_FIELDS else f", not {error['input']!r}"
    return f"{name} {error['msg'][:1].lower()}{error['msg'][1:]}{shown}"


# Fields whose values an error message must not repeat.
_SECRET_FIELDS = frozenset({"secret_keys"})


# The settings of the app (or command) whose work this context is doing: bound by the app for
# each request and for its background tasks (`db.bound`), by the CLI for its command. Per
# context, not per process, so that two apps in one process each read their own.
_bound: ContextVar[Settings] = ContextVar("sessions_api_settings")


def bind(settings: Settings) -> Token[Settings]:
    """Make `settings` the ones `current()` returns in this context (undo with `unbind`)."""
    return _bound.set(settings)


def unbind(token: Token[Settings]) -> None:
    _bound.reset(token)


def current() -> Settings:
    """The settings bound to this context; RuntimeError outside an app's or a command's work."""
    try:
        return _bound.get()
    except LookupError:
        raise RuntimeError("no settings are bound here: this runs outside an app's or a command's work") from None
