"""How far along a long command is, on stderr, for a person at a terminal only: with stderr
not a terminal (a pipe, a log file, CI) it prints nothing, so `--json` output stays clean."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class ImportProgress:
    """Rows imported, rows/s and, for a file (whose size is known), the time left, estimated
    from the share of its bytes read so far."""

    def __init__(self, source: IO[str]) -> None:
        self._enabled = sys.stderr.isatty()
        self._total = _size_of(source)
        self._read = 0
        self._progress = Progress(
            TextColumn("importing"),
            BarColumn(),
            TextColumn("{task.fields[rows]:,} rows"),
            TextColumn("{task.fields[rate]:,.0f} rows/s"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not self._enabled,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> ImportProgress:
        self._progress.start()
        self._task = self._progress.add_task("import", total=self._total, rows=0, rate=0.0)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._progress.stop()

    def counting(self, lines: Iterable[str]) -> Iterator[str]:
        """The lines, counting their size as they are read (for the time left)."""
        for line in lines:
            self._read += len(line)
            yield line

    def rows(self, imported: int) -> None:
        """`imported` rows are written so far."""
        if self._task is None or not self._enabled:
            return
        elapsed = self._progress.tasks[0].elapsed or 0.0
        rate = imported / elapsed if elapsed > 0 else 0.0
        self._progress.update(self._task, completed=self._read, rows=imported, rate=rate)


def _size_of(source: IO[str]) -> int | None:
    """The size of a regular file in bytes; None for a pipe or a terminal (no time left shown)."""
    try:
        status = os.fstat(source.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return status.st_size if status.st_mode & 0o170000 == 0o100000 else None
