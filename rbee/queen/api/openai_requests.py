"""Bodies of the queen's OpenAI-compatible routes as pydantic models. Unknown fields are
ignored: OpenAI clients send fields rbee does not know (or not yet)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StrictBool, model_validator

from rbee.common.request_body import RequestBody
from rbee.common.request_fields import BackendPolicy, DefaultWhen, ModelRef, PromptText
from rbee.common.wire_requests import Messages, SamplingParams
from rbee.common.wire_tools import ToolParams


class StreamOptions(RequestBody):
    """OpenAI's `stream_options`."""

    include_usage: Annotated[bool, DefaultWhen()] = False


class OpenAIBody(SamplingParams):
    """What both OpenAI routes take; `max_completion_tokens` stands for an absent `max_tokens`."""

    model: ModelRef
    n: Literal[1] = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    backend: BackendPolicy | None = None
    """rbee's extension: run on this backend or fail; None: the queen's policy for the model."""

    @model_validator(mode="before")
    @classmethod
    def _max_completion_tokens(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("max_tokens") is None and "max_completion_tokens" in data:
            return {**data, "max_tokens": data["max_completion_tokens"]}
        return data

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage


_Prompts = Annotated[list[PromptText], Field(min_length=1, max_length=1)]


def _only_prompt(value: Any) -> Any:
    """OpenAI allows a list of prompts; rbee takes a list of one as that prompt."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


class CompletionRequest(OpenAIBody):
    """`POST /v1/completions`."""

    prompt: Annotated[PromptText, BeforeValidator(_only_prompt, json_schema_input_type=PromptText | _Prompts)]

    def worker_body(self) -> dict[str, Any]:
        """What the worker gets: the prompt and the sampling settings."""
        return {"prompt": self.prompt, **self.sampling_wire()}


class ChatCompletionRequest(OpenAIBody, ToolParams):
    """`POST /v1/chat/completions`."""

    messages: Messages

    def worker_body(self) -> dict[str, Any]:
        """What the worker gets: the messages, the tools and the sampling settings."""
        messages = [message.model_dump(exclude_none=True) for message in self.messages]
        return {"messages": messages, **self.tool_wire(), **self.sampling_wire()}
