"""The repository's Node tooling (package.json, package-lock.json), installed on demand.

Tests that need it take the `node_tools` fixture: it runs `npm ci` from the committed lock file
when node_modules is missing or was installed from another lock file, so the README's one pytest
command is all a fresh machine needs (with node and npm, which the machine image has)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "node_modules"
_STAMP = NODE_MODULES / ".installed-from-lock"


def ensure_node_modules() -> Path:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise AssertionError(
            "node and npm are needed for the contract tooling tests (Debian: apt-get install nodejs npm)"
        )
    digest = hashlib.sha256((ROOT / "package-lock.json").read_bytes()).hexdigest()
    if not _STAMP.exists() or _STAMP.read_text() != digest:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
        _STAMP.write_text(digest)
    return NODE_MODULES


def bin_path(name: str) -> str:
    return str(NODE_MODULES / ".bin" / name)


def run(command: list[str], timeout: float = 180, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=kwargs.pop("cwd", ROOT), capture_output=True, text=True, timeout=timeout, **kwargs
    )
