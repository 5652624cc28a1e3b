"""A webhook receiver for the benchmark: answers every POST with 204 after
`BENCH_RECEIVER_DELAY_MS` milliseconds and appends one line per delivery to
`BENCH_RECEIVER_LOG`: the path, `webhook-id`, the event's type and timestamp, and the time it
arrived (Unix seconds). Signatures are not checked here (the test suite verifies them with
`standardwebhooks`); this measures arrival.

Run: `uvicorn bench.receiver:app --no-access-log`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

DELAY = float(os.environ.get("BENCH_RECEIVER_DELAY_MS", "0")) / 1000
LOG = open(os.environ.get("BENCH_RECEIVER_LOG", "/dev/null"), "a", buffering=1)  # noqa: SIM115 (the process's)


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    arrived = time.time()
    headers = dict(scope["headers"])
    try:
        event = json.loads(body)
        kind, occurred = event["type"], event["timestamp"]
    except (ValueError, KeyError, TypeError):
        kind, occurred = "?", "?"
    webhook_id = headers.get(b"webhook-id", b"?").decode()
    LOG.write(f"{scope['path']}\t{webhook_id}\t{kind}\t{occurred}\t{arrived:.6f}\n")
    if DELAY:
        await asyncio.sleep(DELAY)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
