"""The Sessions API server, as installed: one package whose subpackages are the repository's
top-level folders (pyproject.toml maps them), in three floors whose imports only go down:

1. `sessions_api.core` (`core/`): infrastructure, importing nothing of ours;
2. `sessions_api.models` (`models/`): the data layer; `sessions_api.migrations` (`migrations/`);
3. `sessions_api.web` (`web/`) and `sessions_api.handlers` (`handlers/`): HTTP;
   `sessions_api.cli` (`cli/`): the command line.

The contract, `openapi/sessions.yaml`, ships as `sessions_api.openapi`.
"""

from pathlib import Path

# Run from the repository's root (`python -m sessions_api`, the current directory first on the
# path), this is the root's `sessions_api/` folder, whose subpackages are its siblings: look
# for them there too, so that any kind of install works from any directory.
if not (Path(__file__).parent / "cli").is_dir():
    __path__.append(str(Path(__file__).parent.parent))
