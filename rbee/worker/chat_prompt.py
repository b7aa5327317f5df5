"""Turning chat messages into a prompt: the model's own template, or a plain fallback."""

from __future__ import annotations

from dataclasses import dataclass

FALLBACK_ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}
FALLBACK_STOPS = ("\nUser:", "\nSystem:")


@dataclass(frozen=True)
class ChatPrompt:
    """A rendered prompt with the stop sequences its format implies."""

    text: str
    stops: tuple[str, ...]
    parse_special: bool


def render_fallback(messages: list[dict[str, str]]) -> ChatPrompt:
    """A plain transcript ending in 'Assistant:' for models without a chat template."""
    lines = [f"{FALLBACK_ROLE_NAMES[m['role']]}: {m['content'].strip()}" for m in messages]
    lines.append("Assistant:")
    return ChatPrompt(text="\n".join(lines), stops=FALLBACK_STOPS, parse_special=False)


def render_chat(
    messages: list[dict[str, str]], template: str | None, bos: str, eos: str
) -> ChatPrompt:
    """Apply the GGUF's `tokenizer.chat_template` when present, else the plain fallback."""
    if not template:
        return render_fallback(messages)
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
    result = formatter(messages=messages)
    stops = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
    return ChatPrompt(text=result.prompt, stops=tuple(stops), parse_special=True)
