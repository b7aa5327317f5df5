"""Bodies of embedding requests as pydantic models: the inputs OpenAI's `/v1/embeddings` takes,
the worker's `POST /v1/embeddings` body and its answer.

`input` is one string, a list of strings, one list of token ids or a list of such lists; it
becomes a list of strings or a list of token-id lists. A mix of strings and token lists is
refused, as OpenAI refuses it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainValidator, StrictInt, TypeAdapter, ValidationError

from rbee.common.request_body import RequestBody, refusal, rule
from rbee.common.request_fields import PromptText
from rbee.common.validation import MAX_EMBEDDING_DIMENSIONS, MAX_EMBEDDING_INPUTS, MAX_TOKEN_ID

TokenId = Annotated[int, Field(strict=True, ge=0, le=MAX_TOKEN_ID)]
TokenIds = Annotated[list[TokenId], Field(min_length=1)]
_Texts = Annotated[list[PromptText], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
_TokenLists = Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
_TEXTS = TypeAdapter(_Texts)
_TOKEN_LISTS = TypeAdapter(_TokenLists)
_SHAPE = "must be a string, a list of strings, a list of token ids or a list of token-id lists"


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _inputs(value: Any) -> list[str] | list[list[int]]:
    """The inputs as a list of strings or of token-id lists (one of either is a list of one)."""
    if isinstance(value, str) or (isinstance(value, list) and value and all(_is_token(v) for v in value)):
        value = [value]
    if not isinstance(value, list):
        raise refusal(_SHAPE)
    if all(isinstance(item, str) for item in value):
        adapter: TypeAdapter[Any] = _TEXTS
    elif all(isinstance(item, list) for item in value):
        adapter = _TOKEN_LISTS
    else:
        raise refusal(_SHAPE)
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise refusal(rule(exc.errors(include_url=False, include_input=False)[0])) from None


EmbeddingInputs = Annotated[
    list[str] | list[list[int]],
    PlainValidator(_inputs, json_schema_input_type=PromptText | _Texts | TokenIds | _TokenLists),
]
Dimensions = Annotated[int, Field(strict=True, ge=1, le=MAX_EMBEDDING_DIMENSIONS)]


class EmbeddingInference(RequestBody):
    """A worker's `POST /v1/embeddings`: the inputs, and the vector size the client expects."""

    input: EmbeddingInputs
    dimensions: Dimensions | None = None
    """None: the model's own size; any other size is refused (rbee does not shorten vectors)."""


class EmbeddingResult(BaseModel):
    """A worker's answer: one L2-normalised vector per input, in order, and the tokens embedded."""

    embeddings: list[list[float]]
    prompt_tokens: StrictInt
