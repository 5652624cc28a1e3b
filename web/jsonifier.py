"""orjson behind Connexion's Jsonifier: faster on pages of sessions than the standard library's
json (BENCHMARKS.md)."""

from __future__ import annotations

import orjson
from connexion.jsonifier import Jsonifier


class OrjsonJsonifier(Jsonifier):
    def dumps(self, data, **_kwargs) -> bytes:
        return orjson.dumps(data)

    def loads(self, data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return data if isinstance(data, str) else data.decode("utf-8", "replace")
