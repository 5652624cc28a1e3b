"""What no log may carry: an API key's secret or a webhook signing secret. The whole suite's
logs are checked: every record of the in-process tests (tests/conftest.py) and every log line
of the server processes the tests start (tests/support/live_server.py)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# A whole key (`sapi_<lookup id>_<secret>`; the prefix alone names a key and may be shown), or
# a signing secret (`whsec_` and base64).
SECRET = re.compile(r"sapi_[0-9a-f]{16}_[A-Za-z0-9_-]{43}|whsec_[A-Za-z0-9+/]{20,}")
# A line of the server's plain log format (what `serve --demo` prints for people is not one).
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \[")


def assert_no_secrets(lines: Iterable[str], where: str) -> None:
    leaked = [line for line in lines if SECRET.search(line)]
    assert not leaked, f"secrets in {where}: {leaked[:3]}"


class RecordText(logging.Handler):
    """Keeps the text of every record (message and traceback) a test's code logs."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.texts.append(text)
