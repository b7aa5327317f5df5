"""Translating OpenAI-style requests to worker tasks and native events to OpenAI responses."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rbee.common import wire
from rbee.queen.api.openai_requests import ChatCompletionRequest, CompletionRequest

FINISH_REASONS = {"max_tokens": "length", "eos": "stop", "stop": "stop", "cancelled": "stop"}


def finish_reason(stop_reason: str, called_tools: bool) -> str:
    """OpenAI's finish reason: `tool_calls` for an answer that called tools and was not cut short."""
    reason = FINISH_REASONS.get(stop_reason, "stop")
    return "tool_calls" if called_tools and reason == "stop" else reason


def tool_call_json(call: wire.ToolCall) -> dict[str, Any]:
    """A tool call as an OpenAI message carries it."""
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


@dataclass(frozen=True)
class OpenAIRequest:
    """A validated /v1/completions or /v1/chat/completions request."""

    chat: bool
    model: str
    worker_body: dict[str, Any]
    stream: bool
    include_usage: bool
    backend: str | None = None
    """The `backend` the request asked for (an rbee extension); None: the queen's policy."""


def parse_request(body: dict[str, Any], chat: bool) -> OpenAIRequest:
    """Validate an OpenAI request body and build the worker's task body."""
    parsed = (ChatCompletionRequest if chat else CompletionRequest).parse(body)
    return OpenAIRequest(chat, parsed.model, parsed.worker_body(), parsed.stream, parsed.include_usage,
                         parsed.backend)


@dataclass
class OpenAIResponder:
    """Builds OpenAI chunks and final objects for one request."""

    request: OpenAIRequest
    response_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))
    prompt_tokens: int = 0

    @property
    def _object(self) -> str:
        return "chat.completion" if self.request.chat else "text_completion"

    def _base(self, suffix: str = "") -> dict[str, Any]:
        prefix = "chatcmpl-" if self.request.chat else "cmpl-"
        return {
            "id": prefix + self.response_id,
            "object": self._object + suffix,
            "created": self.created,
            "model": self.request.model,
        }

    def usage(self, completion_tokens: int) -> dict[str, int]:
        """The usage block."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def _choice(self, text: str | None, finish_reason: str | None, first: bool,
                tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        if not self.request.chat:
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if text is not None:
            delta["content"] = text
        if tool_calls is not None:
            delta["tool_calls"] = tool_calls
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def chunk(self, text: str | None, first: bool = False) -> dict[str, Any]:
        """A streamed chunk carrying `text` (the first chat chunk also names the role)."""
        suffix = ".chunk" if self.request.chat else ""
        return {**self._base(suffix), "choices": [self._choice(text, None, first)]}

    def tool_call_chunks(self, call: wire.ToolCall, first: bool = False) -> list[dict[str, Any]]:
        """A tool call streamed as OpenAI streams one: its id, type and name with empty
        arguments, then the arguments."""
        head = {"index": call.index, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": ""}}
        rest = {"index": call.index, "function": {"arguments": call.arguments}}
        return [{**self._base(".chunk"), "choices": [self._choice(None, None, first, [head])]},
                {**self._base(".chunk"), "choices": [self._choice(None, None, False, [rest])]}]

    def final_chunk(self, stop_reason: str, called_tools: bool = False) -> dict[str, Any]:
        """The streamed chunk that carries the finish reason."""
        suffix = ".chunk" if self.request.chat else ""
        reason = finish_reason(stop_reason, called_tools)
        return {**self._base(suffix), "choices": [self._choice(None, reason, False)]}

    def usage_chunk(self, completion_tokens: int) -> dict[str, Any]:
        """The extra chunk sent when `stream_options.include_usage` is set."""
        suffix = ".chunk" if self.request.chat else ""
        return {**self._base(suffix), "choices": [], "usage": self.usage(completion_tokens)}

    def complete(self, text: str, stop_reason: str, completion_tokens: int,
                 tool_calls: list[wire.ToolCall] | None = None) -> dict[str, Any]:
        """The whole non-streamed answer (content null when it only called tools)."""
        reason = finish_reason(stop_reason, bool(tool_calls))
        if self.request.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if tool_calls:
                message["content"] = text if text.strip() else None
                message["tool_calls"] = [tool_call_json(call) for call in tool_calls]
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reason,
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        return {**self._base(), "choices": [choice], "usage": self.usage(completion_tokens)}
