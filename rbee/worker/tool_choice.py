"""What a chat's `tool_choice` asks of the sampler: the grammar of its tool calls, and when the
grammar starts to hold (from the first token for a required or named call, from `<tool_call>`
on for `auto`; no grammar for `none`)."""

from __future__ import annotations

from dataclasses import dataclass

from rbee.common.wire_requests import ChatInference
from rbee.common.wire_tools import NamedToolChoice
from rbee.worker.tool_grammar import CALL_TRIGGER, tool_grammar


@dataclass(frozen=True)
class ToolGrammar:
    """A GBNF grammar (root rule `root`) and the patterns that switch it on (none: always on)."""

    gbnf: str | None = None
    triggers: tuple[str, ...] = ()


NO_TOOLS = ToolGrammar()


def grammar_of(request: ChatInference) -> ToolGrammar:
    """The grammar `request`'s tool choice asks for."""
    mode = request.tool_mode
    if mode == "none":
        return NO_TOOLS
    functions = [tool.function for tool in request.tools or ()]
    if isinstance(request.tool_choice, NamedToolChoice):
        functions = [f for f in functions if f.name == request.tool_choice.function.name]
    gbnf = tool_grammar(functions, request.parallel_tool_calls and mode != "named")
    return ToolGrammar(gbnf, (CALL_TRIGGER,) if mode == "auto" else ())
