"""Field types of request bodies: rbee's checks (`rbee.common.validation`) and pydantic bounds,
each with the JSON schema the queen's OpenAPI document shows for it.

In each type the `Field` comes before the check, so that its bounds and pattern describe (and
apply to) the string the check has accepted; the check runs first and names the rule broken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticUseDefault, core_schema

from rbee.common.defaults import BACKEND_POLICIES, BACKENDS
from rbee.common.request_body import refusal
from rbee.common.validation import (
    DNS_NAME,
    HTTP_BASE_URL,
    IDENTIFIER,
    MAX_DEVICE_ID,
    MAX_MODEL_REF_CHARS,
    MAX_NODE_NAME_CHARS,
    MAX_PROMPT_CHARS,
    MAX_SLOTS,
    MAX_STOP_CHARS,
    SHA256_HEX,
    InvalidField,
    check_http_url,
    check_identifier,
    check_model_ref,
    check_node_name,
    check_sha256,
    check_text,
)


def checked(check: Callable[[str, Any], Any]) -> BeforeValidator:
    """Validate with `check(field_name, value)`; its refusal becomes a pydantic error of its rule."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        try:
            return check(info.field_name or "value", value)
        except InvalidField as refused:
            raise refusal(refused.rule) from None

    return BeforeValidator(validate)


@dataclass(frozen=True)
class DefaultWhen:
    """These values (`null` unless told) mean the field's default, as leaving the field out does."""

    values: tuple[Any, ...] = (None,)

    def _default(self, value: Any) -> Any:
        if value in self.values:
            raise PydanticUseDefault()
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self._default, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        also = [{"type": "null"} if value is None else {"const": value} for value in self.values]
        return {"anyOf": [handler(schema), *also]}


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern.removeprefix('^').removesuffix('$')})$"


def _text(max_chars: int, allow_empty: bool = False) -> Callable[[str, Any], str]:
    return lambda name, value: check_text(name, value, max_chars, allow_empty)


ModelRef = Annotated[
    str,
    Field(min_length=1, max_length=MAX_MODEL_REF_CHARS,
          description="catalog name, hf:org/repo[:file], file:///abs.gguf or https URL"),
    checked(lambda name, value: check_model_ref(value, name)),
]
NodeName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NODE_NAME_CHARS, pattern=_anchored(DNS_NAME.pattern),
          description="RFC 1123 host or node name, compared in lower case"),
    checked(check_node_name),
]
Identifier = Annotated[str, Field(pattern=IDENTIFIER.pattern), checked(check_identifier)]
HttpBaseUrl = Annotated[str, Field(pattern=HTTP_BASE_URL.pattern), checked(check_http_url)]
Sha256 = Annotated[str, Field(pattern=SHA256_HEX.pattern), checked(check_sha256)]
PromptText = Annotated[
    str,
    Field(min_length=1, max_length=MAX_PROMPT_CHARS,
          description="no control characters but tab, CR and LF; no bidi overrides"),
    checked(_text(MAX_PROMPT_CHARS)),
]
MessageText = Annotated[
    str, Field(max_length=MAX_PROMPT_CHARS), checked(_text(MAX_PROMPT_CHARS, allow_empty=True))
]
StopText = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS), checked(_text(MAX_STOP_CHARS))]
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
Slots = Annotated[int, Field(strict=True, ge=1, le=MAX_SLOTS)]
DeviceId = Annotated[int, Field(strict=True, ge=0, le=MAX_DEVICE_ID)]
Backend = Literal[BACKENDS]
BackendPolicy = Literal[BACKEND_POLICIES]
"""A backend, or `auto`: a usable GPU, else the CPU."""
