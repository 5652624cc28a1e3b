"""The dead-code gate (`.ci/run`): vulture over the package's code, with what calls code by name
counted as a use: the spec's operationIds (Connexion routes to the handlers of those names),
and the hooks frameworks call (listed below, each with who calls it). The tests count as
users (a helper the plan tests read SQL with is not dead), but are not themselves reported.

    .venv/bin/python tools/dead_code.py    # prints what nothing uses; exits 1 if anything
"""

from __future__ import annotations

import sys
from pathlib import Path

import vulture
import yaml

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["core", "models", "web", "handlers", "cli", "sessions_api"]
# Read by name by a framework, not called by our code: the tables' columns and enum members
# (SQLAlchemy), and migrations (Alembic reads `revision`, `upgrade`, `downgrade`).
EXCLUDED = ["models/tables.py", "migrations/"]
FRAMEWORK_NAMES = [
    "model_config",  # pydantic-settings
    "naming_convention",  # SQLAlchemy's MetaData
    "impl",  # SQLAlchemy's TypeDecorator ...
    "cache_ok",
    "inherit_cache",
    "process_bind_param",
    "process_result_value",
    "coltype",  # ... and its @compiles signature
    "isolation_level",  # the DBAPI connection's attribute, set on SQLite
    "chunk_size",  # Starlette's FileResponse reads it
    "_srcfile",  # logging's module settings
    "logThreads",
    "logProcesses",
    "logMultiprocessing",
    "get_fn",  # Connexion's security handler ...
    "required_scopes",
    "security_scheme",
    "resolve_operation_id",  # ... and its resolver
    "send_400_response",  # uvicorn's protocol
    "create_app",  # uvicorn's --factory
    "trace",  # the context manager protocol's signature
]
DECORATED_BY_FRAMEWORKS = ["@field_validator", "@compiles", "@event.listens_for"]


def unused() -> list[str]:
    spec = yaml.safe_load((ROOT / "openapi" / "sessions.yaml").read_text())
    operation_ids = {
        operation["operationId"]
        for item in spec["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    scanner = vulture.Vulture(ignore_names=FRAMEWORK_NAMES, ignore_decorators=DECORATED_BY_FRAMEWORKS)
    scanner.scavenge([str(ROOT / path) for path in (*PATHS, "tests")], exclude=[str(ROOT / path) for path in EXCLUDED])
    found = []
    for item in scanner.get_unused_code(min_confidence=60):
        if Path(item.filename).resolve().is_relative_to(ROOT / "tests"):
            continue
        if item.name in operation_ids or (item.typ == "variable" and item.name in _PATH_PARAMETERS):
            continue
        found.append(item.get_report())
    return found


# Path parameters Connexion passes to handlers that act on the organization the security
# handler resolved (they take the argument and need not read it).
_PATH_PARAMETERS = {"organizationId"}


if __name__ == "__main__":
    reports = unused()
    print("\n".join(reports) or "dead code: none")
    sys.exit(1 if reports else 0)
