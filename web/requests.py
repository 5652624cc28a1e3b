"""A request read once: its query string and headers, parsed here and nowhere else.

Every later reader (the security handler, validation, the handler's arguments) takes its
values from the `ParsedRequest` this module leaves in the scope, so no two of them can read
the same request differently. What could be read two ways is refused instead:

- the query string is `&`-separated `name=value` pairs, `+` a space, percent-decoded to UTF-8
  (400 if the bytes are not UTF-8);
- a single-valued query parameter or header sent twice answers 400 naming it (array
  parameters keep their repeats, in order);
- a JSON body is UTF-8 (RFC 8259 section 8.1): a `charset` other than utf-8 answers 415, a
  byte-order mark or bytes that are not UTF-8 answer 400 (see `web.validation`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from connexion.middleware.abstract import ROUTING_CONTEXT
from starlette.types import Scope

from sessions_api.web.errors import ApiError

# Where the parsed request waits in the scope's extensions (shared by Connexion's scope copies).
PARSED = "sessions_api.parsed_request"


@dataclass(frozen=True)
class ParsedRequest:
    """Query parameters and headers by name (headers in lower case), each with every value
    sent, in order."""

    query: dict[str, list[str]]
    headers: dict[str, list[str]]

    def header(self, name: str) -> str | None:
        """The value of a header that is sent at most once (checked before anyone asks)."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


def parse(scope: Scope) -> ParsedRequest:
    return ParsedRequest(query=parse_query(scope.get("query_string", b"")), headers=_headers(scope["headers"]))


def parse_query(raw: bytes) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for pair in raw.split(b"&"):
        if pair:
            name, _, value = pair.partition(b"=")
            values.setdefault(_decoded(name), []).append(_decoded(value))
    return values


def _decoded(part: bytes) -> str:
    try:
        return unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "The query string is not UTF-8 once percent-decoded.") from None


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in raw:
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return headers


def parsed_of(scope: Scope) -> ParsedRequest:
    """The request as `RequestParseMiddleware` read it (parsed here if it did not run)."""
    extensions = scope.setdefault("extensions", {})
    parsed: ParsedRequest | None = extensions.get(PARSED)
    if parsed is None:
        parsed = extensions[PARSED] = parse(scope)
    return parsed


def refuse_repeated(where: str, values: dict[str, list[str]], single: Iterable[tuple[str, str]]) -> None:
    """400 naming the first of `single` ((key, name as documented)) sent more than once."""
    for key, name in single:
        sent = values.get(key)
        if sent is not None and len(sent) > 1:
            raise ApiError(400, f"{where} '{name}' was sent {len(sent)} times; send it once.")


def routed_handler_path(scope: Scope) -> str | None:
    """The handler path of the operation Connexion routed the request to, if any (what its
    routing context calls `operation_id`)."""
    handler_path: str | None = scope.get("extensions", {}).get(ROUTING_CONTEXT, {}).get("operation_id")
    return handler_path
