"""The llama.cpp grammar (GBNF) of a request's `response_format`, built with llama-cpp-python's
own converter: any JSON object for `json_object`, the schema for `json_schema`."""

from __future__ import annotations

import json

from rbee.common.response_format import ResponseFormat
from rbee.common.validation import invalid

STRICT_CHAR = (r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
               r'[0-9a-fA-F] [0-9a-fA-F])')
"""A character inside a JSON string as llama.cpp's own converter writes it: no raw control
characters (JSON forbids them; llama-cpp-python's port of the converter lets them through)."""


def response_grammar(response_format: ResponseFormat | None) -> str | None:
    """The GBNF (root rule `root`) the output must follow; None for free text. A schema the
    converter cannot turn into a grammar is a 400 naming `response_format`."""
    from llama_cpp import llama_grammar

    if response_format is None or not response_format.constrains:
        return None
    if response_format.json_schema is None:
        return llama_grammar.JSON_GBNF
    try:
        grammar = llama_grammar.json_schema_to_gbnf(json.dumps(response_format.json_schema.schema_))
    except Exception as exc:  # the converter raises bare exceptions of many kinds
        raise invalid("response_format", "has a JSON schema rbee cannot turn into a grammar") from exc
    loose = llama_grammar.PRIMITIVE_RULES["char"].content
    return grammar.replace(f"char ::= {loose}\n", f"char ::= {STRICT_CHAR}\n")
