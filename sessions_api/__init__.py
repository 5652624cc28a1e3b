"""The Sessions API server, as installed: one package whose subpackages are the repository's
top-level folders (pyproject.toml maps them), in three floors whose imports only go down:

1. `sessions_api.core` (`core/`): infrastructure, importing nothing of ours;
2. `sessions_api.models` (`models/`): the data layer; `sessions_api.migrations` (`migrations/`);
3. `sessions_api.web` (`web/`) and `sessions_api.handlers` (`handlers/`): HTTP;
   `sessions_api.cli` (`cli/`): the command line.

The contract, `openapi/sessions.yaml`, ships as `sessions_api.openapi`.
"""
