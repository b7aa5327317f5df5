"""OpenAI's `response_format` as a request field: plain text, any JSON object, or JSON matching
a schema. The worker turns the two JSON kinds into a llama.cpp grammar (rbee.worker.grammars);
here the shape and size are checked, so the queen never needs llama.cpp."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictStr, model_validator

from rbee.common.request_body import RequestBody, refusal
from rbee.common.request_fields import DefaultWhen
from rbee.common.validation import MAX_SCHEMA_CHARS


def _within_schema_cap(schema: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
        raise refusal(f"must be at most {MAX_SCHEMA_CHARS} characters as JSON")
    return schema


class JsonSchema(RequestBody):
    """`response_format.json_schema`: a named JSON schema the answer must match."""

    name: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: StrictStr | None = None
    schema_: Annotated[dict[str, Any], AfterValidator(_within_schema_cap)] = Field(alias="schema")
    strict: Annotated[StrictBool, DefaultWhen()] = False
    """Honoured either way: a grammar always holds the output to the schema."""


class ResponseFormat(RequestBody):
    """`response_format`: `text` (no constraint), `json_object` or `json_schema`."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise refusal("must carry `json_schema` exactly when its type is json_schema")
        return self

    @property
    def constrains(self) -> bool:
        """True when the output must be JSON."""
        return self.type != "text"
