"""Turning chat messages into a prompt: the model's own template, or a plain fallback.

Messages arrive as Hugging Face templates read them (`ChatMessage.template_message`). Offered
tools go to the template's `tools` variable; a template that ignores them (its prompt does not
name the functions) and the plain fallback get them in a system message instead
(`tool_prompt`), which teaches the call format the grammar and the parser use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rbee.common.errors import ApiError
from rbee.worker.tool_grammar import CALL_CLOSE, CALL_OPEN

FALLBACK_ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
FALLBACK_STOPS = ("\nUser:", "\nSystem:", "\nTool:")

Message = dict[str, Any]


@dataclass(frozen=True)
class ChatPrompt:
    """A rendered prompt with the stop sequences its format implies."""

    text: str
    stops: tuple[str, ...]
    parse_special: bool


def tool_prompt(tools: list[Message]) -> str:
    """The system text that describes `tools` and the call format to a model whose template
    does not know tools."""
    functions = json.dumps([tool["function"] for tool in tools], ensure_ascii=False)
    return (
        "You may call functions to answer. They are described here in JSON schema:\n"
        f"{functions}\n"
        f"To call one, answer with {CALL_OPEN}\n"
        '{"name": <function name>, "arguments": <arguments as a JSON object>}\n'
        f"{CALL_CLOSE} (one such block per call, nothing else)."
    )


def with_tool_prompt(messages: list[Message], tools: list[Message]) -> list[Message]:
    """`messages` with `tool_prompt` added to their system message (a new first one if none)."""
    text = tool_prompt(tools)
    if messages and messages[0]["role"] == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _fallback_line(message: Message) -> str:
    role = FALLBACK_ROLE_NAMES[message["role"]]
    parts = [message["content"].strip()] if message["content"].strip() else []
    for call in message.get("tool_calls", ()):
        body = json.dumps({"name": call["function"]["name"], "arguments": call["function"]["arguments"]},
                          ensure_ascii=False)
        parts.append(f"{CALL_OPEN}\n{body}\n{CALL_CLOSE}")
    if "tool_call_id" in message:
        role = f"{role} ({message['tool_call_id']})"
    return f"{role}: " + "\n".join(parts)


def render_fallback(messages: list[Message], tools: list[Message] | None = None) -> ChatPrompt:
    """A plain transcript ending in 'Assistant:' for models without a chat template."""
    if tools:
        messages = with_tool_prompt(messages, tools)
    lines = [_fallback_line(message) for message in messages]
    lines.append("Assistant:")
    return ChatPrompt(text="\n".join(lines), stops=FALLBACK_STOPS, parse_special=False)


def render_chat(
    messages: list[Message], template: str | None, bos: str, eos: str, tools: list[Message] | None = None
) -> ChatPrompt:
    """Apply the GGUF's `tokenizer.chat_template` when present, else the plain fallback; a
    template that fails (its own `raise_exception`, or a Jinja error) is the client's 400."""
    if not template:
        return render_fallback(messages, tools)
    import jinja2
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    try:
        formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        result = formatter(messages=messages, tools=tools or None)
        if tools and not all(tool["function"]["name"] in result.prompt for tool in tools):
            result = formatter(messages=with_tool_prompt(messages, tools))
    except (jinja2.TemplateError, ValueError, TypeError) as exc:
        raise ApiError(400, "CHAT_TEMPLATE_ERROR", f"the model's chat template refused the messages: {exc}",
                       {"field": "messages"}) from None
    stops = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
    return ChatPrompt(text=result.prompt, stops=tuple(stops), parse_special=True)
