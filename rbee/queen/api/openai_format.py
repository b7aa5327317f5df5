"""Translating OpenAI-style requests to worker tasks and native events to OpenAI responses:
one choice per requested `n`, each with its text, finish reason and, when asked for, its log
probabilities in the route's own shape (chat: `logprobs.content`; completions: `tokens`,
`token_logprobs`, `top_logprobs`, `text_offset`)."""

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
    choices: int = 1
    logprobs: bool = False
    """Whether each choice carries its tokens' log probabilities."""


def parse_request(body: dict[str, Any], chat: bool) -> OpenAIRequest:
    """Validate an OpenAI request body and build the worker's task body."""
    parsed = (ChatCompletionRequest if chat else CompletionRequest).parse(body)
    return OpenAIRequest(chat, parsed.model, parsed.worker_body(), parsed.stream, parsed.include_usage,
                         parsed.backend, parsed.n, parsed.logprob_alternatives is not None)


def _alternatives(entry: wire.TokenLogprobs) -> dict[str, float]:
    """The completions API's `top_logprobs` entry: the likeliest tokens and the sampled one."""
    return {**{c.token: c.logprob for c in entry.top}, entry.sampled.token: entry.sampled.logprob}


@dataclass
class _Choice:
    """What one choice produced so far."""

    parts: list[str] = field(default_factory=list)
    logprobs: list[wire.TokenLogprobs] = field(default_factory=list)
    offset: int = 0
    """Characters of the tokens reported so far (the completions API's `text_offset`)."""
    named_role: bool = False
    calls: list[wire.ToolCall] = field(default_factory=list)
    """The tool calls it made."""


@dataclass
class OpenAIResponder:
    """Builds OpenAI chunks and final objects for one request."""

    request: OpenAIRequest
    response_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))
    prompt_tokens: int = 0
    _choices: dict[int, _Choice] = field(default_factory=dict)

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

    def _state(self, index: int) -> _Choice:
        return self._choices.setdefault(index, _Choice())

    def usage(self, end: wire.End) -> dict[str, Any]:
        """The usage block (completion tokens of every choice together; the prompt tokens the
        worker found in its cache instead of decoding them)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": end.tokens_out,
            "total_tokens": self.prompt_tokens + end.tokens_out,
            "prompt_tokens_details": {"cached_tokens": end.prompt_tokens_cached},
        }

    def _logprobs(self, state: _Choice, entries: list[wire.TokenLogprobs]) -> dict[str, Any] | None:
        """The route's logprobs object of `entries` (None when the request did not ask)."""
        if not self.request.logprobs:
            return None
        if self.request.chat:
            return {"content": [entry.to_wire() for entry in entries], "refusal": None}
        offsets = []
        for entry in entries:
            offsets.append(state.offset)
            state.offset += len(entry.sampled.token)
        return {
            "tokens": [entry.sampled.token for entry in entries],
            "token_logprobs": [entry.sampled.logprob for entry in entries],
            "top_logprobs": [_alternatives(entry) for entry in entries],
            "text_offset": offsets,
        }

    def _chunk_choice(self, index: int, text: str | None, reason: str | None,
                      entries: list[wire.TokenLogprobs],
                      tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        state = self._state(index)
        logprobs = self._logprobs(state, entries) if entries else None
        if not self.request.chat:
            return {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": reason}
        delta: dict[str, Any] = {}
        if not state.named_role:
            delta["role"] = "assistant"
            state.named_role = True
        if text is not None:
            delta["content"] = text
        if tool_calls is not None:
            delta["tool_calls"] = tool_calls
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}

    def _chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        suffix = ".chunk" if self.request.chat else ""
        return {**self._base(suffix), "choices": [choice]}

    def chunk(self, token: wire.Token) -> dict[str, Any]:
        """The streamed chunk of one token event (a choice's first chat chunk names the role)."""
        entries = [token.logprobs] if token.logprobs is not None else []
        return self._chunk(self._chunk_choice(token.choice, token.token, None, entries))

    def tool_call_chunks(self, call: wire.ToolCall) -> list[dict[str, Any]]:
        """A tool call (of the only choice: tools take no `n`) streamed as OpenAI streams one: its
        id, type and name with empty arguments, then the arguments."""
        self._state(0).calls.append(call)
        head = {"index": call.index, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": ""}}
        rest = {"index": call.index, "function": {"arguments": call.arguments}}
        return [self._chunk(self._chunk_choice(0, None, None, [], [head])),
                self._chunk(self._chunk_choice(0, None, None, [], [rest]))]

    def final_chunks(self, end: wire.End) -> list[dict[str, Any]]:
        """The streamed chunks that carry each choice's finish reason."""
        reasons = end.choice_stop_reasons(self.request.choices)
        return [self._chunk(self._chunk_choice(
                    index, None, finish_reason(reason, bool(self._state(index).calls)), []))
                for index, reason in enumerate(reasons)]

    def usage_chunk(self, end: wire.End) -> dict[str, Any]:
        """The extra chunk sent when `stream_options.include_usage` is set."""
        suffix = ".chunk" if self.request.chat else ""
        return {**self._base(suffix), "choices": [], "usage": self.usage(end)}

    def add(self, token: wire.Token) -> None:
        """Keep a token event of an answer sent whole."""
        state = self._state(token.choice)
        state.parts.append(token.token)
        if token.logprobs is not None:
            state.logprobs.append(token.logprobs)

    def add_tool_call(self, call: wire.ToolCall) -> None:
        """Keep a tool call of an answer sent whole (of the only choice: tools take no `n`)."""
        self._state(0).calls.append(call)

    def complete(self, end: wire.End) -> dict[str, Any]:
        """The whole non-streamed answer, of the events `add` and `add_tool_call` kept (content
        null when a choice only called tools)."""
        choices = []
        for index, reason in enumerate(end.choice_stop_reasons(self.request.choices)):
            state = self._state(index)
            text = "".join(state.parts)
            choice: dict[str, Any] = {"index": index}
            if self.request.chat:
                message: dict[str, Any] = {"role": "assistant", "content": text}
                if state.calls:
                    message["content"] = text if text.strip() else None
                    message["tool_calls"] = [tool_call_json(call) for call in state.calls]
                choice["message"] = message
            else:
                choice["text"] = text
            choice["logprobs"] = self._logprobs(state, state.logprobs)
            choice["finish_reason"] = finish_reason(reason, bool(state.calls))
            choices.append(choice)
        return {**self._base(), "choices": choices, "usage": self.usage(end)}
