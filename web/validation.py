"""Request validation: Connexion's rules, with messages that name what is wrong, and schema
validators compiled once per parameter instead of once per request."""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem
from connexion.lifecycle import ConnexionRequest
from connexion.utils import is_null, is_nullable
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator
from connexion.validators.parameter import (
    ParameterValidator as ConnexionParameterValidator,
)
from connexion.validators.parameter import draft4_format_checker
from jsonschema import Draft4Validator
from starlette.requests import Request as StarletteRequest

from sessions_api.core import settings

_FORMAT_HINTS = {
    "uuid": "must be a UUID, like 3b0e8c8e-1f4a-4c47-9a3e-8f6d2b7c5a10",
    "date-time": "must be an RFC 3339 timestamp with a 'Z' or a UTC offset, like 2026-11-28T09:14:03.120456Z",
}


# Values remembered as valid, per process (a set of that many small tuples: about 2 MB).
_MAX_REMEMBERED_VALID = 10_000


class ParameterValidator(ConnexionParameterValidator):
    # id(parameter) -> (parameter, validator); the parameter is kept so its id is not reused.
    _compiled: dict[int, tuple[dict, Draft4Validator]] = {}
    # (id(parameter), type, value) of values found valid: validation is a pure function of the
    # schema and the value, and most requests repeat theirs (an organization id, a page size),
    # so a value seen valid is not run through jsonschema again (a fifth of a small GET's CPU).
    _valid: set[tuple[int, type, object]] = set()

    def validate(self, scope):
        # The request built around Starlette's: ConnexionRequest's own constructor first looks
        # for an attribute it does not have yet, at the price of two exceptions per request.
        request = ConnexionRequest.from_starlette_request(StarletteRequest(scope), uri_parser=self.uri_parser)
        self.validate_request(request)

    def validate_parameter(self, parameter_type, value, param, param_name=None):  # noqa: ARG002
        if is_nullable(param) and is_null(value):
            return None
        where = f"{parameter_type.capitalize()} parameter '{param['name']}'"
        if value is None:
            return f"{where} is required." if param.get("required") else None
        if _has_nul(value):
            return f"{where} must not contain the NUL character."
        seen = (id(param), type(value), value) if isinstance(value, str | int | float) else None
        if seen is not None and seen in self._valid:
            return None
        schema = param.get("schema", param)
        error = next(iter(self._validator(param, schema).iter_errors(value)), None)
        if error is None:
            if seen is not None:
                if len(self._valid) >= _MAX_REMEMBERED_VALID:
                    self._valid.clear()
                self._valid.add(seen)
            return None
        hint = _FORMAT_HINTS.get(schema.get("format", ""))
        if hint and error.validator in {"format", "pattern"}:
            return f"{where} {hint}."
        return f"{where} is invalid: {error.message}."

    @classmethod
    def _validator(cls, param: dict, schema: dict) -> Draft4Validator:
        cached = cls._compiled.get(id(param))
        if cached is None or cached[0] is not param:
            cached = (param, Draft4Validator(schema, format_checker=draft4_format_checker))
            cls._compiled[id(param)] = cached
        return cached[1]


class JSONBodyValidator(JSONRequestBodyValidator):
    """Connexion's JSON body validator, with a 400 (never a 500) for anything that is not JSON
    within bounds: not in its charset, malformed, out of range, or nested deeper than
    `SESSIONS_API_MAX_JSON_DEPTH`. orjson parses (it refuses what it cannot represent, and
    stops at 1024 levels, where json.loads would raise RecursionError)."""

    async def _parse(self, stream, scope):
        raw = b"".join([message async for message in stream])
        try:
            text = raw.decode(self._encoding)
        except (UnicodeDecodeError, LookupError):
            raise BadRequestProblem(detail="The request body is not valid UTF-8 JSON.") from None
        if not text:
            return None
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequestProblem(detail=f"The request body is not valid JSON ({exc}).") from None
        problem = _out_of_bounds(body, settings.current().max_json_depth)
        if problem:
            raise BadRequestProblem(detail=f"The request body is {problem}.")
        return body


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


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    return isinstance(value, list) and any(isinstance(item, str) and "\x00" in item for item in value)


VALIDATORS = {
    **VALIDATOR_MAP,
    "parameter": ParameterValidator,
    "body": MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": JSONBodyValidator}),
}
