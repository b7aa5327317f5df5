"""The llama.cpp grammar (GBNF) of a request's `response_format`, built with llama-cpp-python's
own converter: any JSON object for `json_object`, the schema for `json_schema`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from rbee.common.response_format import ResponseFormat
from rbee.common.validation import invalid

STRICT_CHAR = (r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
               r'[0-9a-fA-F] [0-9a-fA-F])')
"""A character inside a JSON string as llama.cpp's own converter writes it: no raw control
characters (JSON forbids them; llama-cpp-python's port of the converter lets them through)."""


UNENFORCED = frozenset({
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "uniqueItems",
    "minProperties", "maxProperties", "not", "if", "then", "else", "dependentRequired",
    "dependentSchemas", "dependencies", "patternProperties", "contains", "minContains", "maxContains",
    "propertyNames", "unevaluatedProperties", "unevaluatedItems",
})
"""Schema keywords llama-cpp-python's converter leaves out of the grammar: a schema using one is
refused, since the answer could break it."""
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
"""Keywords whose value maps names to schemas (the names are no keywords)."""
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties")


def _keywords(schema: Any) -> Iterator[str]:
    """Every keyword of a schema and of the schemas inside it."""
    if not isinstance(schema, dict):
        return
    yield from schema
    for key in _SCHEMA_MAPS:
        for inner in (schema.get(key) or {}).values() if isinstance(schema.get(key), dict) else ():
            yield from _keywords(inner)
    for key in _SCHEMA_LISTS:
        for inner in schema.get(key) or () if isinstance(schema.get(key), list) else ():
            yield from _keywords(inner)
    for key in _SCHEMA_VALUES:
        inner = schema.get(key)
        for each in inner if isinstance(inner, list) else [inner]:
            yield from _keywords(each)


def response_grammar(response_format: ResponseFormat | None) -> str | None:
    """The GBNF (root rule `root`) the output must follow; None for free text. A schema the
    converter cannot turn into a grammar is a 400 naming `response_format`."""
    from llama_cpp import llama_grammar

    if response_format is None or not response_format.constrains:
        return None
    if response_format.json_schema is None:
        return llama_grammar.JSON_GBNF
    schema = response_format.json_schema.schema_
    unenforced = sorted(UNENFORCED.intersection(_keywords(schema)))
    if unenforced:
        raise invalid("response_format", f"uses {', '.join(unenforced)}, which rbee's grammar cannot enforce")
    try:
        grammar = llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises bare exceptions of many kinds
        raise invalid("response_format", "has a JSON schema rbee cannot turn into a grammar") from exc
    loose = llama_grammar.PRIMITIVE_RULES["char"].content
    return grammar.replace(f"char ::= {loose}\n", f"char ::= {STRICT_CHAR}\n")
