"""Splitting a generation's text into its content and its tool calls, as the text arrives.

Text outside `<tool_call>…</tool_call>` is content, released as soon as it cannot be the start of
an opening tag. A call's body is parsed once its closing tag (or the end of the output) arrives;
one that is not a JSON object naming an offered function with object arguments stays content, as
llama-server leaves it. Blank text after a call is not content.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from rbee.common import json_depth, wire
from rbee.common.tunables import http_limits
from rbee.worker.tool_grammar import CALL_CLOSE, CALL_OPEN

Piece = str | wire.ToolCall
"""Content text, or a parsed tool call."""


def new_call_id() -> str:
    """A fresh tool-call id in OpenAI's shape."""
    return "call_" + uuid.uuid4().hex[:24]


def parse_call(body: str, names: frozenset[str], index: int) -> wire.ToolCall | None:
    """The call a tag's body holds, or None when it is not a call of one of `names`."""
    try:
        call = json_depth.loads(body, http_limits().json_max_depth)
    except ValueError:
        return None
    if not isinstance(call, dict) or call.get("name") not in names:
        return None
    arguments: Any = call.get("arguments", call.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json_depth.loads(arguments, http_limits().json_max_depth)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return wire.ToolCall(index, new_call_id(), call["name"], json.dumps(arguments, ensure_ascii=False))


def _open_tag_prefix(text: str) -> int:
    """Length of the longest end of `text` that begins an opening tag."""
    for size in range(min(len(CALL_OPEN) - 1, len(text)), 0, -1):
        if CALL_OPEN.startswith(text[-size:]):
            return size
    return 0


class ToolCallSplitter:
    """One generation's text, fed piece by piece, as content and tool calls."""

    def __init__(self, names: frozenset[str]) -> None:
        self._names = names
        self._held = ""
        self._in_call = False
        self.calls = 0

    def feed(self, text: str) -> list[Piece]:
        """The content and calls `text` completes (possibly none: text is held back)."""
        self._held += text
        pieces: list[Piece] = []
        while True:
            if self._in_call:
                end = self._held.find(CALL_CLOSE)
                if end < 0:
                    return pieces
                pieces.extend(self._call(self._held[:end], CALL_CLOSE))
                self._held = self._held[end + len(CALL_CLOSE):]
                self._in_call = False
                continue
            start = self._held.find(CALL_OPEN)
            if start < 0:
                keep = _open_tag_prefix(self._held)
                pieces.extend(self._content(self._held[: len(self._held) - keep]))
                self._held = self._held[len(self._held) - keep:]
                return pieces
            pieces.extend(self._content(self._held[:start]))
            self._held = self._held[start + len(CALL_OPEN):]
            self._in_call = True

    def flush(self) -> list[Piece]:
        """What is still held at the end of the output: an unclosed call parsed, or content."""
        held, self._held = self._held, ""
        if self._in_call:
            self._in_call = False
            return self._call(held, "")
        return self._content(held)

    def _call(self, body: str, close: str) -> list[Piece]:
        call = parse_call(body, self._names, self.calls)
        if call is None:
            return self._content(CALL_OPEN + body + close)
        self.calls += 1
        return [call]

    def _content(self, text: str) -> list[Piece]:
        if not text or (self.calls and not text.strip()):
            return []
        return [text]
