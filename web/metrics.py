"""The Prometheus exposition: every process's counters summed, plus what the database says now.

Under `sessions-api serve`, `PROMETHEUS_MULTIPROC_DIR` is set before the workers start and each
worker writes its metrics there (prometheus-client's multiprocess mode); whichever process
answers a scrape sums them all. Without it (one process, e.g. in tests) the process's own
registry is read.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from sessions_api.core import db
from sessions_api.models import gauges

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
logger = logging.getLogger(__name__)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class DatabaseCollector(Collector):
    """Live sessions and devices by state, read from `database` at scrape time;
    `sessions_api_database_up` 0 (and nothing else from the database) when it does not answer."""

    def __init__(self, database: db.Database) -> None:
        self.database = database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with db.bound(self.database):
                counts = gauges.current_counts()
        except Exception:
            logger.warning("metrics: the database did not answer", exc_info=True)
            yield GaugeMetricFamily("sessions_api_database_up", "Whether the database answered this scrape.", 0)
            return
        yield GaugeMetricFamily("sessions_api_database_up", "Whether the database answered this scrape.", 1)
        yield GaugeMetricFamily("sessions_api_live_sessions", "Sessions not yet released.", counts.live_sessions)
        yield GaugeMetricFamily(
            "sessions_api_webhook_deliveries_pending",
            "Webhook deliveries not yet delivered nor given up (due now or waiting for a retry).",
            counts.webhook_deliveries_pending,
        )
        yield GaugeMetricFamily(
            "sessions_api_artifact_stored_bytes",
            "Bytes the organizations' artifacts hold (pending uploads at their declared size).",
            counts.artifact_stored_bytes,
        )
        devices = GaugeMetricFamily("sessions_api_devices", "Devices of the fleet, by state.", labels=["state"])
        for state, count in counts.devices_by_state.items():
            devices.add_metric([state], count)
        yield devices
        queued = GaugeMetricFamily(
            "sessions_api_queued_session_requests",
            "Starts waiting in the queue, by class of organization (custom plan, self_service, default).",
            labels=["organization_class"],
        )
        for kind, count in counts.queued_by_class.items():
            queued.add_metric([kind], count)
        yield queued


class _ThisProcess(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def scrape_registry(database: db.Database) -> CollectorRegistry:
    """What a scrape reads: every process's metrics (or this one's), and the database's."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory:
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_ThisProcess())
    registry.register(DatabaseCollector(database))
    return registry


def exposition() -> bytes:
    """The text exposition of a scrape, with the bound database's counts (it reads the
    database: call it off the event loop). Dead workers' live gauges are dropped first."""
    forget_dead_workers()
    return generate_latest(scrape_registry(db.current()))


_LIVE_FILE = re.compile(r"gauge_live\w*_(\d+)\.db")


def forget_dead_workers() -> None:
    """Drop the live gauges of workers that are gone (uvicorn replaces a worker that dies;
    prometheus-client's own hook for this is gunicorn's)."""
    directory = multiprocess_dir()
    if not directory:
        return
    for pid in {
        int(match.group(1))
        for path in Path(directory).glob("gauge_live*.db")
        if (match := _LIVE_FILE.fullmatch(path.name))
    }:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)
        except PermissionError:  # alive, under another user
            pass
