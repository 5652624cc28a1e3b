"""The docs say what the code does: the settings table lists exactly the settings, with their
defaults, and the command-line page shows each command's own `--help`."""

from __future__ import annotations

import re
import subprocess
import sys

from sessions_api.core.settings import Settings, env_name
from tests.support.node_tools import ROOT

CONFIGURATION = ROOT / "docs" / "operators" / "configuration.md"
# Read by the environment itself, not by Settings (serve sets it up for its workers).
NOT_SETTINGS = {"PROMETHEUS_MULTIPROC_DIR"}
# How the table writes a default that is no literal.
EMPTY = {"(empty)", "(any)"}


def _table() -> dict[str, str]:
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", CONFIGURATION.read_text(), re.M)
    return {name: default.strip() for name, default in rows}


def test_the_settings_table_lists_every_setting_once_and_nothing_else():
    names = re.findall(r"^\| `([A-Z0-9_]+)` \|", CONFIGURATION.read_text(), re.M)
    assert len(names) == len(set(names)), "a setting is listed twice"
    assert set(names) - NOT_SETTINGS == {env_name(field) for field in Settings.model_fields}


def test_the_settings_table_gives_each_settings_default():
    table = _table()
    for field, info in Settings.model_fields.items():
        shown, default = table[env_name(field)], info.default
        if default is None:  # computed from other settings: said in words
            assert not shown.startswith("`"), (field, shown)
        elif default == "":
            assert shown in EMPTY, (field, shown)
        else:
            literal = shown.strip("`")
            if isinstance(default, bool):
                assert literal == str(default).lower(), (field, shown)
            elif isinstance(default, int | float):
                assert float(literal) == float(default), (field, shown)
            else:
                assert literal == str(default), (field, shown)


def test_the_command_line_page_shows_every_commands_help():
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "cli_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
