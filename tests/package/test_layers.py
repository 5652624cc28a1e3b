"""The floors: the data layer stands without the HTTP layer (lint-imports checks every import
in CI; this checks what a process actually loads)."""

from __future__ import annotations

import subprocess
import sys

_LOADED_WEB_MODULES = """
import sys
import {module}
web = ("connexion", "starlette", "uvicorn", "sessions_api.web", "sessions_api.handlers", "sessions_api.cli")
print(sorted({{name for name in sys.modules if name.startswith(web)}} - {{"sessions_api"}}))
"""


def _web_modules_loaded_by(module: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _LOADED_WEB_MODULES.format(module=module)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_data_layer_loads_no_http_code():
    assert _web_modules_loaded_by("sessions_api.models") == "[]"
    assert _web_modules_loaded_by("sessions_api.models.leases") == "[]"


def test_the_infrastructure_loads_nothing_above_it():
    assert _web_modules_loaded_by("sessions_api.core.db") == "[]"
    loaded_by_app = _web_modules_loaded_by("sessions_api.web.app")
    assert "'connexion'" in loaded_by_app and "sessions_api.cli" not in loaded_by_app


def test_the_command_line_loads_no_metrics_before_serve_sets_their_directory():
    """prometheus-client reads PROMETHEUS_MULTIPROC_DIR when first imported: `serve` sets it
    up first, so nothing the CLI imports at start may import it (modules that count import
    the metrics lazily)."""
    loaded = "import sys, sessions_api.cli.commands; print('prometheus_client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", loaded], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_each_packages_docstring_names_every_module_in_it():
    """What a package's docstring says it holds is what it holds (they drift otherwise)."""
    import importlib
    import pkgutil

    for package_name in ("core", "models", "web", "handlers", "cli"):
        package = importlib.import_module(f"sessions_api.{package_name}")
        modules = {info.name for info in pkgutil.iter_modules(package.__path__)}
        unnamed = sorted(name for name in modules if f"`{name}`" not in (package.__doc__ or ""))
        assert unnamed == [], f"sessions_api.{package_name} does not name {unnamed}"
