"""The `--help` of every `sessions-api` command, as docs/operators/cli.md shows it between its
markers. `python tools/cli_docs.py` rewrites that part of the page; `--check` (which
tests/package/test_docs.py runs) fails when the page and the command differ.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "operators" / "cli.md"
START, END = "<!-- cli-help:start -->", "<!-- cli-help:end -->"
# argparse wraps help to the terminal's width: the page's is fixed.
COLUMNS = "100"


def helps() -> str:
    """Every command's help, the top level first, each in a fenced block under its name."""
    os.environ["COLUMNS"] = COLUMNS
    from sessions_api.cli.commands import build_parser

    blocks: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        blocks.append(f"### `{' '.join(path)}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])

    walk(build_parser(), ["sessions-api"])
    return "\n".join(blocks)


def page_with(text: str, generated: str) -> str:
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    return f"{before}{START}\n\n{generated}\n{END}{after}"


if __name__ == "__main__":
    page = PAGE.read_text()
    if START not in page or END not in page:
        sys.exit(f"{PAGE} has no {START} ... {END} markers")
    wanted = page_with(page, helps())
    if "--check" in sys.argv[1:]:
        if wanted != page:
            sys.exit(f"{PAGE} differs from the commands' --help: run `python tools/cli_docs.py`")
        print(f"{PAGE} shows every command's --help")
    else:
        PAGE.write_text(wanted)
        print(f"wrote the help of every command into {PAGE}")
