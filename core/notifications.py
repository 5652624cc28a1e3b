"""PostgreSQL's LISTEN/NOTIFY, to wake whoever waits in this process for a change another
process committed. A notification arrives when its transaction commits, never if it rolls
back; it only wakes: what changed is read from the tables, the store of record.

`notify()` is called inside the writer's transaction; `listen()` keeps one dedicated
autocommit connection per process, reconnecting with a backoff, and says through
`on_listening` whether it currently listens (a waiter then need not poll).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

import psycopg
from sqlalchemy import Connection, text

from sessions_api.core import db

logger = logging.getLogger(__name__)
# The longest wait between two attempts to listen again after the connection was lost.
_MOST_BACKOFF_SECONDS = 5.0


def notify(*, conn: Connection, channel: str, payloads: Iterable[str]) -> None:
    """Send each payload on `channel` when `conn`'s transaction commits (PostgreSQL only; a
    SQLite writer's changes are seen by its readers' short checks)."""
    if conn.dialect.name != "postgresql":
        return
    rows = [{"channel": channel, "payload": payload} for payload in payloads]
    if rows:
        conn.execute(text("SELECT pg_notify(:channel, :payload)"), rows)


async def listen(
    database: db.Database, channels: Mapping[str, Callable[[str], None]], on_listening: Callable[[bool], None]
) -> None:
    """On one connection, call each channel's handler for every notification on it, for as long
    as the task runs."""
    backoff = 0.1
    url = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, **db.postgresql_connect_args(database.settings)
            ) as conn:
                for channel in channels:
                    await conn.execute(f"LISTEN {channel}")
                on_listening(True)
                backoff = 0.1
                async for notification in conn.notifies():
                    handler = channels.get(notification.channel)
                    if handler is not None:
                        handler(notification.payload)
        except Exception:  # the database restarted, the network broke: listen again, polling meanwhile
            logger.warning("lost the LISTEN connection to PostgreSQL; waiters poll until it is back", exc_info=True)
        finally:
            on_listening(False)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, _MOST_BACKOFF_SECONDS)
