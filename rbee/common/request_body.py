"""Request bodies as pydantic models: their base class, and the one converter from a pydantic
ValidationError to the 400 `INVALID_REQUEST` every daemon answers.

The converter names each field (dotted, list indexes left out: `messages.content`) and the rule
it broke, from the error's type and our own bounds, never from the input: a refused value is
not echoed, whatever it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from rbee.common.errors import ApiError

RULE_ERROR = "rbee_rule"
"""The pydantic error type of a refusal by one of rbee's own rules."""

_RULES = {
    "missing": "is required",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "string_too_short": "must be at least {min_length} characters",
    "string_too_long": "must be at most {max_length} characters",
    "string_pattern_mismatch": "must match {pattern}",
    "too_short": "must hold at least {min_length} items",
    "too_long": "must hold at most {max_length} items",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "greater_than": "must be greater than {gt}",
    "less_than": "must be less than {lt}",
    "literal_error": "must be {expected}",
    "enum": "must be {expected}",
    "extra_forbidden": "is not a field of this request",
    "datetime_from_date_parsing": "must be an ISO 8601 date and time",
    "datetime_parsing": "must be an ISO 8601 date and time",
    "datetime_type": "must be an ISO 8601 date and time",
}
_NOT_EMPTY = {"string_too_short", "too_short"}


class RequestBody(BaseModel):
    """A JSON request body: unknown fields are ignored, and the validated body is read-only."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def parse(cls, data: Mapping[str, Any], label: Callable[[str], str] = str) -> Self:
        """The validated body, or a 400 ApiError naming each broken field as `label` spells it."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise api_error(exc, label) from None


def refusal(broken: str) -> PydanticCustomError:
    """The pydantic error a validator raises when a value breaks one of rbee's rules (`broken`)."""
    return PydanticCustomError(RULE_ERROR, "{rule}", {"rule": broken})


def api_error(exc: ValidationError, label: Callable[[str], str] = str) -> ApiError:
    """400 `INVALID_REQUEST`: every field and rule broken, `details.field` the first field."""
    problems = dict.fromkeys(
        (label(field_name(error["loc"])), rule(error))
        for error in exc.errors(include_url=False, include_input=False)
    )
    message = "; ".join(f"'{name}' {broken}" for name, broken in problems)
    first = next(iter(problems))[0]
    return ApiError(400, "INVALID_REQUEST", message, {"field": first})


def field_name(loc: tuple[int | str, ...]) -> str:
    """`('messages', 0, 'content')` → `messages.content`; the whole body is `body`."""
    return ".".join(part for part in loc if isinstance(part, str)) or "body"


def rule(error: ErrorDetails) -> str:
    """The rule an error broke, in words that never quote the input."""
    kind = error["type"]
    context = error.get("ctx", {})
    if kind == RULE_ERROR:
        return error["msg"]
    if kind in _NOT_EMPTY and context.get("min_length") == 1:
        return "must not be empty"
    return _RULES.get(kind, "is not valid").format(**context)
