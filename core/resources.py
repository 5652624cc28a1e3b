"""Files the server reads at run time, found through the installed package.

The build maps the repository's `openapi/` and `migrations/` folders into the package
(`sessions_api.openapi`, `sessions_api.migrations`; see pyproject.toml), so the same lookup
works from a source checkout (editable install) and from a wheel. The package must be
installed on a file system (not imported from a zip file): Connexion and Alembic read
these as paths.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def spec_path() -> Path:
    """The contract, `openapi/sessions.yaml`."""
    return Path(str(files("sessions_api.openapi") / "sessions.yaml"))


def migrations_path() -> Path:
    """The Alembic script directory, `migrations/`."""
    return Path(str(files("sessions_api.migrations")))
