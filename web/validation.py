"""Request validation, compiled once per operation: each parameter's and each body's schema
validator is built when the app is made, and what it checked is exactly what the handler gets.

A parameter's text (from `web.requests`) is converted to its schema's type, validated, and
that converted value, or the spec's default, is the handler's argument. A body is parsed
once, by orjson, from bytes that must be UTF-8, and the object validated is the object the
handler receives. Messages name what is wrong, in one sentence.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from connexion.json_schema import Draft4RequestValidator
from jsonschema import Draft4Validator

from sessions_api.web.errors import ApiError

_FORMAT_HINTS = {
    "uuid": "must be a UUID, like 3b0e8c8e-1f4a-4c47-9a3e-8f6d2b7c5a10",
    "date-time": "must be an RFC 3339 timestamp with a 'Z' or a UTC offset, like 2026-11-28T09:14:03.120456Z",
}
_LOCATION_WORDS = {"query": "Query parameter", "header": "Header", "path": "Path parameter"}
_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
# Values remembered as valid per parameter: validation is a pure function of the schema and
# the value, and most requests repeat theirs (an organization id, a page size).
_MAX_REMEMBERED_VALID = 1_000
_BOM = b"\xef\xbb\xbf"


def _validator(schema: Mapping[str, Any]) -> Draft4Validator:
    # Connexion's Draft 4 validator, which knows OpenAPI's `nullable` and `readOnly`.
    validator: Draft4Validator = Draft4RequestValidator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)
    return validator


def _converter(schema: Mapping[str, Any]) -> Callable[[str], Any]:
    """Text to the schema's type; text that is not of that type stays text (and fails validation)."""
    kind = schema.get("type")
    if kind == "integer":
        return lambda text: int(text) if _INTEGER.fullmatch(text) else text
    if kind == "number":
        return lambda text: float(text) if _NUMBER.fullmatch(text) else text
    if kind == "boolean":
        return lambda text: {"true": True, "false": False}.get(text, text)
    return str


class ParameterRule:
    """One parameter of one operation: where it is, its compiled schema, its argument."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        schema = spec.get("schema", {})
        self.location: str = spec["in"]
        self.name: str = spec["name"]
        # Where web.requests keeps it: headers by their name in lower case.
        self.key = self.name.lower() if self.location == "header" else self.name
        # The handler's argument: headers in snake case (`Idempotency-Key` -> `idempotency_key`).
        argument = re.sub(r"\W", "_", self.name).lower() if self.location == "header" else self.name
        # A Python keyword gets an underscore, as Connexion names it (`from` -> `from_`).
        self.argument = argument + "_" if keyword.iskeyword(argument) else argument
        self.required: bool = bool(spec.get("required"))
        self.many = schema.get("type") == "array"
        self.default = schema.get("default")
        self._convert = _converter(schema.get("items", {}) if self.many else schema)
        self._format = (schema.get("items", {}) if self.many else schema).get("format", "")
        self._validator = _validator(schema)
        self._valid: set[tuple[type, object]] = set()
        self._where = f"{_LOCATION_WORDS[self.location]} '{self.name}'"

    def value(self, sent: list[str] | None) -> Any:
        """The validated value of what was sent (every value for an array, else the only one),
        or the default; None when absent without a default. ApiError 400 when invalid."""
        if not sent:
            if self.required:
                raise ApiError(400, f"{self._where} is required.")
            return self.default
        if any("\x00" in text for text in sent):
            raise ApiError(400, f"{self._where} must not contain the NUL character.")
        value = [self._convert(text) for text in sent] if self.many else self._convert(sent[0])
        remembered = None if self.many else (type(value), value)
        if remembered is not None and remembered in self._valid:
            return value
        error = next(iter(self._validator.iter_errors(value)), None)
        if error is not None:
            hint = _FORMAT_HINTS.get(self._format)
            if hint and error.validator in {"format", "pattern"}:
                raise ApiError(400, f"{self._where} {hint}.")
            raise ApiError(400, f"{self._where} is invalid: {error.message}.")
        if remembered is not None:
            if len(self._valid) >= _MAX_REMEMBERED_VALID:
                self._valid.clear()
            self._valid.add(remembered)
        return value


class BodyRule:
    """The JSON request body of one operation: the media types it takes and its compiled schema."""

    def __init__(self, spec: Mapping[str, Any], max_json_depth: int) -> None:
        content = spec.get("content", {})
        self.media_types = frozenset(media_type.lower() for media_type in content)
        self.required: bool = bool(spec.get("required"))
        media: Mapping[str, Any] = next(iter(content.values()), {})
        schema = media.get("schema", {})
        self._nullable = bool(schema.get("nullable"))
        self._validator = _validator(schema)
        self._max_depth = max_json_depth

    def value(self, content_type: str | None, raw: bytes) -> Any:
        """The validated body; ApiError 415 for a media type or charset it does not take, 400
        for anything else that is not a valid body."""
        if not raw and content_type is None:
            if self.required:
                raise ApiError(400, "The request body is required: send it as application/json.")
            return None
        self._check_media_type(content_type)
        if raw.startswith(_BOM):
            raise ApiError(400, "The request body starts with a byte-order mark; send UTF-8 JSON without one.")
        if not raw:
            if self.required:
                raise ApiError(400, "The request body is required: send it as application/json.")
            return None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if not _is_utf8(raw):
                raise ApiError(400, "The request body is not valid UTF-8.") from None
            raise ApiError(400, f"The request body is not valid JSON ({exc}).") from None
        problem = _out_of_bounds(body, self._max_depth)
        if problem:
            raise ApiError(400, f"The request body is {problem}.")
        if body is None and not self._nullable:
            raise ApiError(400, "The request body must not be null.")
        error = next(iter(self._validator.iter_errors(body)), None)
        if error is not None:
            where = "".join(f"[{part!r}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
            at = f" (at body{where})" if where else ""
            raise ApiError(400, f"The request body is invalid: {error.message}{at}.")
        return body

    def _check_media_type(self, content_type: str | None) -> None:
        media_type, parameters = parse_content_type(content_type or "")
        accepted = " or ".join(sorted(self.media_types))
        if media_type not in self.media_types:
            raise ApiError(415, f"Send the request body as {accepted}.")
        charset = parameters.get("charset")
        if charset is not None and charset.lower() != "utf-8":
            shown = re.sub(r"[^\x21-\x7e]", "?", charset[:40])
            raise ApiError(415, f"JSON is UTF-8: send charset=utf-8 or no charset, not '{shown}'.")


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """`application/json; charset="UTF-8"` -> ("application/json", {"charset": "UTF-8"})."""
    media_type, *parts = value.split(";")
    parameters = {}
    for part in parts:
        name, _, text = part.partition("=")
        text = text.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1]
        parameters[name.strip().lower()] = text
    return media_type.strip().lower(), parameters


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _out_of_bounds(value: object, depth_limit: int) -> str | None:
    """What is wrong with a parsed body: arrays and objects nested deeper than `depth_limit`,
    or text with the NUL character (no database stores it as text). Without recursion."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "JSON with the NUL character in a string"
        elif isinstance(item, dict | list):
            if depth > depth_limit:
                return f"JSON nested deeper than {depth_limit} levels"
            children: Iterable[object] = item
            if isinstance(item, dict):
                if any("\x00" in key for key in item):
                    return "JSON with the NUL character in a name"
                children = item.values()
            pending.extend((child, depth + 1) for child in children if isinstance(child, str | dict | list))
    return None
