"""`sessions-api serve`: the HTTP server, its workers, its logs and its metrics."""

from __future__ import annotations

import argparse
import atexit
import logging
import logging.config
import os
import shutil
import sys
import tempfile
from pathlib import Path

from sessions_api.core import settings as settings_module
from sessions_api.core.logs import logging_config

logger = logging.getLogger("sessions_api.serve")


def serve(args: argparse.Namespace) -> None:
    settings = settings_module.current()
    # Before anything imports prometheus-client: its mode is fixed when it is imported.
    _prepare_metrics_directory()
    log_config = logging_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(log_config)

    import uvicorn

    from sessions_api.web.protocols import EnvelopeHttpProtocol

    if args.workers > 1 and not settings.rate_limits_shared:
        logger.warning(
            "rate limits are counted in memory: each of the %d workers counts on its own, so a budget "
            "is %d times as large; set SESSIONS_API_RATE_LIMIT_STORAGE=redis://... to share it",
            args.workers,
            args.workers,
        )
    if not settings.secret_keys:
        logger.warning(
            "SESSIONS_API_SECRET_KEYS is not set: webhook signing secrets are stored as they are; "
            "set it to Fernet keys to seal them at rest (docs/operators/deploy.md)"
        )
    _report_artifact_store(settings)
    if settings.metrics and settings.metrics_address():
        _serve_metrics_apart(*settings.metrics_address())  # type: ignore[misc]
    base = f"http://{args.host}:{args.port}/api/v1"
    if args.demo:
        _print_demo(base)
    uvicorn.run(
        "sessions_api.web.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        timeout_graceful_shutdown=args.graceful_timeout,
        log_config=log_config,
        access_log=False,
        http=EnvelopeHttpProtocol,
        h11_max_incomplete_event_size=settings.max_header_bytes,  # where uvicorn has no httptools
        # X-Forwarded-For names the client only when a trusted proxy sent it (never by default).
        proxy_headers=bool(settings.trusted_proxy_list()),
        forwarded_allow_ips=settings.trusted_proxy_list() or None,
    )


def _report_artifact_store(settings: settings_module.Settings) -> None:
    """Name where artifacts' bytes are kept; warn when a file store meets a database that
    several hosts may share (each host would keep, and find, only its own files)."""
    store = settings.artifact_store_url()
    if store.startswith("file://"):
        logger.info(
            "artifacts are kept in %s (the file store: one host)", Path(store.removeprefix("file://")).resolve()
        )
        if not settings.is_sqlite:
            logger.warning(
                "PostgreSQL with a file:// artifact store: every host keeps its own files, so an artifact "
                "uploaded through one host is missing on the others; set SESSIONS_API_ARTIFACT_STORE=s3://... "
                "when more than one host serves this database (docs/operators/artifacts.md)"
            )
    else:
        logger.info("artifacts are kept in %s", store)


def _prepare_metrics_directory() -> None:
    """Every worker writes its metrics to files in one directory, emptied at each start (the
    operator's PROMETHEUS_MULTIPROC_DIR, else a temporary one, removed at exit)."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess directory was set")
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
        return
    directory = tempfile.mkdtemp(prefix="sessions-api-metrics-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def _serve_metrics_apart(host: str, port: int) -> None:
    """/metrics on a listener of its own, in this (the supervising) process: it reads what the
    workers write, and the database."""
    from prometheus_client import start_http_server

    from sessions_api.core import db
    from sessions_api.web.metrics import scrape_registry

    start_http_server(port, host, registry=scrape_registry(db.current()))
    logger.info("metrics at http://%s:%d/metrics", host, port)


def _print_demo(base: str) -> None:
    from sessions_api.cli.demo import load_demo

    demo = load_demo()
    print(f"API docs: {base}/ui/ (the contract: {base}/openapi.yaml and {base}/openapi.json)")
    print(f"Demo API key (shown once): {demo.secret}")
    print(f"  curl -H 'Authorization: Bearer {demo.secret}' '{base}/sessions?limit=5'")
    if demo.team_organization_id:
        print(
            f"  curl -H 'Authorization: Bearer {demo.secret}' "
            f"-H 'X-Organization-Id: {demo.team_organization_id}' '{base}/sessions?limit=5'"
        )
    sys.stdout.flush()
