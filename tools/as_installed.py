"""Run a code checker on the package as it installs: `python tools/as_installed.py mypy` or
`python tools/as_installed.py lint-imports`.

The repository's top-level folders are the subpackages of `sessions_api` (pyproject.toml's
`package-dir`), a mapping that mypy and import-linter cannot read, and an editable install is
an import hook they do not run. So this lays the package out as symlinks in
`build/as-installed/`, puts it first on the path, and runs the tool there with the
configuration in pyproject.toml, so that it sees every module by its installed name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "as-installed"
TOOLS = {
    "mypy": [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "sessions_api"],
    "lint-imports": [str(Path(sys.executable).parent / "lint-imports"), str(ROOT / "pyproject.toml")],
}


def lay_out() -> Path:
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(TREE, ignore_errors=True)
    package = TREE / "sessions_api"
    package.mkdir(parents=True)
    for name, folder in package_dir.items():
        if name == "sessions_api":
            for item in (ROOT / folder).glob("*.py"):
                (package / item.name).symlink_to(item)
        elif name.count(".") > 1:  # a subpackage (core.stores): inside its parent's folder, linked whole
            continue
        else:
            (package / name.split(".", 1)[1]).symlink_to(ROOT / folder, target_is_directory=True)
    return TREE


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in TOOLS:
        print(f"usage: python tools/as_installed.py {{{'|'.join(TOOLS)}}} [options]", file=sys.stderr)
        return 2
    tree = lay_out()
    env = {**os.environ, "MYPYPATH": str(tree), "PYTHONPATH": str(tree)}
    return subprocess.call([*TOOLS[sys.argv[1]], *sys.argv[2:]], cwd=tree, env=env)


if __name__ == "__main__":
    sys.exit(main())
