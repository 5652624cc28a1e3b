"""One settings object, read from environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = PROJECT_ROOT / "openapi" / "sessions.yaml"


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name} must be true or false, not {raw!r}")


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None


def _positive_or_none(name: str) -> int | None:
    """A whole number of at least 1, or None when unset (the setting's own default applies)."""
    value = _int(name, 0)
    if os.environ.get(name) and value < 1:
        raise ValueError(f"{name} must be at least 1, not {os.environ[name]!r}")
    return value or None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """Every knob of the server; `Settings.from_env()` is the only reader of the environment."""

    database_url: str = "sqlite:///./sessions.db"
    # Validating every response against the spec costs ~13x throughput: tests turn it on.
    validate_responses: bool = False
    log_level: str = "INFO"
    # `lastUsedAt` of an API key is written at most this often, to keep reads write-free.
    key_last_used_interval_seconds: int = 60
    sqlite_busy_timeout_ms: int = 5000
    # Connection pool, per process: size + overflow bounds the connections one worker opens;
    # a request that waits longer than the pool timeout for one answers 503.
    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_pool_timeout_seconds: float = 5.0
    # Threads per process that run the blocking database calls; None: see database_threads().
    db_threads: int | None = None
    # PostgreSQL only: no statement runs longer than this; connecting gives up after that.
    db_statement_timeout_ms: int = 10_000
    db_connect_timeout_seconds: int = 5
    # Sessions: the duration when none is asked for, the most one may ask for, how many live
    # sessions an organization may hold, and how often expired sessions are released.
    default_session_minutes: int = 60
    max_session_minutes: int = 240
    max_live_sessions_per_organization: int = 50
    expiry_sweep_seconds: float = 10.0
    spec_path: Path = field(default=SPEC_PATH)

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            database_url=os.environ.get("DATABASE_URL") or cls.database_url,
            validate_responses=_bool("SESSIONS_API_VALIDATE_RESPONSES", cls.validate_responses),
            log_level=(os.environ.get("SESSIONS_API_LOG_LEVEL") or cls.log_level).upper(),
            key_last_used_interval_seconds=_int(
                "SESSIONS_API_KEY_LAST_USED_INTERVAL", cls.key_last_used_interval_seconds
            ),
            sqlite_busy_timeout_ms=_int("SESSIONS_API_SQLITE_BUSY_TIMEOUT_MS", cls.sqlite_busy_timeout_ms),
            db_pool_size=_int("SESSIONS_API_DB_POOL_SIZE", cls.db_pool_size),
            db_max_overflow=_int("SESSIONS_API_DB_MAX_OVERFLOW", cls.db_max_overflow),
            db_pool_timeout_seconds=_float("SESSIONS_API_DB_POOL_TIMEOUT", cls.db_pool_timeout_seconds),
            db_threads=_positive_or_none("SESSIONS_API_DB_THREADS"),
            db_statement_timeout_ms=_int("SESSIONS_API_DB_STATEMENT_TIMEOUT_MS", cls.db_statement_timeout_ms),
            db_connect_timeout_seconds=_int("SESSIONS_API_DB_CONNECT_TIMEOUT", cls.db_connect_timeout_seconds),
            default_session_minutes=_int("SESSIONS_API_DEFAULT_SESSION_MINUTES", cls.default_session_minutes),
            max_session_minutes=_int("SESSIONS_API_MAX_SESSION_MINUTES", cls.max_session_minutes),
            max_live_sessions_per_organization=_int(
                "SESSIONS_API_MAX_LIVE_SESSIONS", cls.max_live_sessions_per_organization
            ),
            expiry_sweep_seconds=_float("SESSIONS_API_EXPIRY_SWEEP_SECONDS", cls.expiry_sweep_seconds),
        )

    def database_threads(self) -> int:
        """One on SQLite, whose work runs in this process: more threads only take turns at the
        GIL, and at 16 requests in flight one thread served a 100-session page for half the
        CPU of anyio's default 40 (BENCHMARKS.md). Elsewhere the pool size: the database works
        in its own process, and a request holds one connection at a time, so no thread waits
        for a connection."""
        if self.db_threads is not None:
            return self.db_threads
        return 1 if self.database_url.startswith("sqlite") else self.db_pool_size


_current: Settings | None = None


def configure(settings: Settings) -> None:
    """Make `settings` the ones `current()` returns (the app factory calls this)."""
    global _current
    _current = settings


def current() -> Settings:
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current
