"""The GBNF grammar of an answer's tool calls, from the JSON schemas of the offered functions.

A call is written as Hermes and Qwen models write it (and the fallback prompt teaches):
`<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`, one per call. llama-cpp-python's
`json_schema_to_gbnf` turns the schema of the call object into rules; this module wraps them
in the tags. A required or named call constrains the answer from its first token; `auto` lets
text through until `<tool_call>` appears (a lazy grammar, `CALL_TRIGGER`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from rbee.common.errors import ApiError
from rbee.common.validation import MAX_PARALLEL_TOOL_CALLS
from rbee.common.wire_tools import FunctionSpec

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
CALL_TRIGGER = r"[\s\S]*?(" + re.escape(CALL_OPEN) + r")[\s\S]*"
"""llama.cpp's lazy-grammar pattern: the grammar takes over from the opening tag on."""
_ANY_ARGUMENTS: dict[str, Any] = {"type": "object"}
_ROOT_LINE = re.compile(r"^root ::= ", re.MULTILINE)


def call_schema(functions: list[FunctionSpec]) -> dict[str, Any]:
    """The JSON schema of one call of one of `functions`: its name and its arguments."""
    alternatives = [
        {
            "type": "object",
            "properties": {"name": {"const": function.name},
                           "arguments": function.parameters or _ANY_ARGUMENTS},
            "required": ["name", "arguments"],
        }
        for function in functions
    ]
    return alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}


def tool_grammar(functions: list[FunctionSpec], parallel: bool) -> str:
    """GBNF (root rule `root`) of one tagged call of one of `functions`, or of up to
    `MAX_PARALLEL_TOOL_CALLS` calls on their own lines when `parallel`. 400 when a schema is one
    llama.cpp's converter cannot take."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        rules = json_schema_to_gbnf(json.dumps(call_schema(functions)), prop_order=["name", "arguments"])
    except (AssertionError, ValueError, TypeError, KeyError, NotImplementedError, RecursionError) as exc:
        raise ApiError(400, "INVALID_REQUEST", "'tools.function.parameters' must be a JSON schema that "
                       f"llama.cpp's converter takes ({type(exc).__name__})",
                       {"field": "tools.function.parameters"}) from None
    tagged = f'"{CALL_OPEN}\\n" rbee-call "\\n{CALL_CLOSE}"'
    repeat = f' ("\\n" rbee-tagged){{0,{MAX_PARALLEL_TOOL_CALLS - 1}}}' if parallel else ""
    return (_ROOT_LINE.sub("rbee-call ::= ", rules)
            + f"\nrbee-tagged ::= {tagged}\nroot ::= rbee-tagged{repeat}\n")
