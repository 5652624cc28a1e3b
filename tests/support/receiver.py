"""A webhook receiver on 127.0.0.1 for tests: it records every delivery and answers as told."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verifies_with(self, secret: str) -> bool:
        """Whether `standardwebhooks` (as any receiver would) accepts it with `secret`."""
        try:
            Webhook(secret).verify(self.body, self.headers)
        except Exception:
            return False
        return True


# How the receiver answers the n-th delivery (from 1) to a path: a status, after a delay (s),
# and optionally headers.
Answer = Callable[[str, int], tuple[int, float] | tuple[int, float, dict[str, str]]]


def always_ok(path: str, n: int) -> tuple[int, float]:
    return 204, 0.0


class Receiver:
    def __init__(self, answer: Answer = always_ok, port: int = 0) -> None:
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._answer = answer
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                delivery = Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with receiver._lock:
                    receiver.deliveries.append(delivery)
                    n = sum(1 for seen in receiver.deliveries if seen.path == self.path)
                status, delay, *more = receiver._answer(self.path, n)
                time.sleep(delay)
                self.send_response(status)
                for name, value in (more[0] if more else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Delivery]:
        with self._lock:
            return [delivery for delivery in self.deliveries if delivery.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 20) -> list[Delivery]:
        """The deliveries to `path` once there are at least `count` (bounded wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.at(path)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.at(path))} deliveries after {timeout}s, wanted {count}")


@contextmanager
def receiving(answer: Answer = always_ok, port: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(answer, port)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
