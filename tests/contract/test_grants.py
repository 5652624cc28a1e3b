"""Every grant ends (docs/contributors/security.md): each write operation of the spec declares
the grants it makes (`x-grants`), each grant has a row in the security page's table, and each
test the table names exists. A new capability that hands out a grant without saying how it
ends fails here."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from sessions_api.web.operations import spec_operations

ROOT = Path(__file__).resolve().parents[2]
SECURITY = ROOT / "docs" / "contributors" / "security.md"
SPEC = ROOT / "openapi" / "sessions.yaml"
# The table's columns: a grant's row must say how it ends in each.
COLUMNS = [
    "Grant",
    "Made by",
    "Ends at its expiry",
    "Revoked",
    "Its maker removed or demoted",
    "Its holder removed",
    "Tested by",
]


def _table() -> dict[str, dict[str, str]]:
    lines = [line for line in SECURITY.read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == COLUMNS, header
    rows = {}
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == len(COLUMNS) and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = dict(zip(COLUMNS, cells, strict=True))
    return rows


def _declared() -> dict[str, list[str] | None]:
    spec = yaml.safe_load(SPEC.read_text())
    return {
        operation["operationId"]: operation.get("x-grants")
        for _, method, operation in spec_operations(spec)
        if method != "get"
    }


def test_every_write_operation_declares_the_grants_it_makes():
    undeclared = sorted(name for name, grants in _declared().items() if not isinstance(grants, list))
    assert undeclared == [], f"declare x-grants (a list, empty when none) on: {undeclared}"


def test_every_grant_made_has_a_row_that_says_how_it_ends():
    table = _table()
    made = {grant for grants in _declared().values() for grant in grants or ()}
    assert made - set(table) == set(), "add a row to docs/contributors/security.md"
    for grant, row in table.items():
        assert all(row[column] for column in COLUMNS), f"{grant}: every column says something"


def test_every_test_the_table_names_exists():
    defined = {
        name
        for path in (ROOT / "tests").rglob("test_*.py")
        for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M)
    }
    for grant, row in _table().items():
        named = re.findall(r"`(test_\w+)`", row["Tested by"])
        assert named, f"{grant}: the table names no test"
        assert set(named) <= defined, f"{grant}: no such test: {sorted(set(named) - defined)}"
