"""MkDocs hooks (mkdocs.yml): the contract is published with the site from `openapi/`, where it
lives; the docs embed that file (the reference page's Swagger UI), never a copy of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

SPEC = Path(__file__).resolve().parent.parent / "openapi" / "sessions.yaml"


def on_files(files: Files, config: Any) -> Files:
    files.append(
        File(
            "openapi/sessions.yaml",
            src_dir=str(SPEC.parent.parent),
            dest_dir=config["site_dir"],
            use_directory_urls=config["use_directory_urls"],
        )
    )
    return files
