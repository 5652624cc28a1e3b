"""Request parameter validation: Connexion's rules, with messages that name the parameter and
schema validators compiled once per parameter instead of once per request."""

from __future__ import annotations

from jsonschema import Draft4Validator
from connexion.utils import is_null, is_nullable
from connexion.validators.parameter import ParameterValidator as ConnexionParameterValidator
from connexion.validators.parameter import draft4_format_checker

_FORMAT_HINTS = {
    "uuid": "must be a UUID, like 3b0e8c8e-1f4a-4c47-9a3e-8f6d2b7c5a10",
    "date-time": "must be an RFC 3339 timestamp with a 'Z' or a UTC offset, like 2026-11-28T09:14:03.120456Z",
}


class ParameterValidator(ConnexionParameterValidator):
    # id(parameter) -> (parameter, validator); the parameter is kept so its id is not reused.
    _compiled: dict[int, tuple[dict, Draft4Validator]] = {}

    def validate_parameter(self, parameter_type, value, param, param_name=None):  # noqa: ARG002
        if is_nullable(param) and is_null(value):
            return None
        where = f"{parameter_type.capitalize()} parameter '{param['name']}'"
        if value is None:
            return f"{where} is required." if param.get("required") else None
        schema = param.get("schema", param)
        error = next(iter(self._validator(param, schema).iter_errors(value)), None)
        if error is None:
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
