"""What a large transfer's test and benchmark need: a file of random bytes on disk (never
whole in memory), its chunks, and a watch on a process's CPU time and resident memory."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

MiB = 1024 * 1024


def random_file(path: Path, size: int) -> str:
    """`size` bytes (whole MiB) at `path`, no two MiB alike; their SHA-256."""
    hasher, block = hashlib.sha256(), os.urandom(MiB)
    with path.open("wb") as file:
        for index in range(size // MiB):
            chunk = block[index % 251 :] + block[: index % 251]
            hasher.update(chunk)
            file.write(chunk)
    return hasher.hexdigest()


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(MiB):
            yield chunk


class ProcessWatch:
    """A process's CPU seconds and resident memory (from /proc); used as a context, it also
    keeps the peak resident memory seen while it was open."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
