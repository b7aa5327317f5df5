"""Bodies of the queen's OpenAI-compatible routes as pydantic models. Unknown fields are
ignored: OpenAI clients send fields rbee does not know (or not yet)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rbee.common.request_body import RequestBody, refusal
from rbee.common.request_fields import BackendPolicy, DefaultWhen, ModelRef, PromptText
from rbee.common.validation import MAX_COMPLETION_LOGPROBS, MAX_TOP_LOGPROBS
from rbee.common.wire_requests import Choices, Messages, SamplingParams
from rbee.common.wire_tools import ToolParams


class StreamOptions(RequestBody):
    """OpenAI's `stream_options`."""

    include_usage: Annotated[bool, DefaultWhen()] = False


class OpenAIBody(SamplingParams):
    """What both OpenAI routes take; `max_completion_tokens` stands for an absent `max_tokens`.
    Log probabilities are asked for with each route's own field, not llama-server's `n_probs`."""

    model: ModelRef
    n: Choices = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    backend: BackendPolicy | None = None
    """rbee's extension: run on this backend or fail; None: the queen's policy for the model."""
    store: Annotated[Literal[False], DefaultWhen()] = False
    """Refused when true: rbee keeps no completions to list or distil later."""
    metadata: Annotated[None, DefaultWhen()] = None
    """Refused when given: it tags stored completions, and rbee stores none."""
    service_tier: Annotated[Literal["auto", "default"] | None, DefaultWhen()] = None
    """Only `auto` or `default`: rbee has one tier."""
    user: Annotated[StrictStr | None, DefaultWhen()] = None
    """Accepted with no effect on the answer (OpenAI's end-user id for its abuse monitoring)."""
    safety_identifier: Annotated[StrictStr | None, DefaultWhen()] = None
    """Accepted with no effect on the answer (OpenAI's successor of `user`)."""
    prompt_cache_key: Annotated[StrictStr | None, DefaultWhen()] = None
    """Accepted with no effect on the answer (OpenAI's hint for routing to its prompt caches)."""

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

    @property
    def logprob_alternatives(self) -> int | None:
        """Alternatives per token to report with its log probability; None: no log probabilities."""
        return None

    def generation_wire(self) -> dict[str, Any]:
        """The sampling fields, the log probabilities asked for and the choices, for the worker."""
        return {**self.sampling_wire(), "n_probs": self.logprob_alternatives, "n": self.n}


_Prompts = Annotated[list[PromptText], Field(min_length=1, max_length=1)]


def _only_prompt(value: Any) -> Any:
    """OpenAI allows a list of prompts; rbee takes a list of one as that prompt."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


class CompletionRequest(OpenAIBody):
    """`POST /v1/completions`."""

    prompt: Annotated[PromptText, BeforeValidator(_only_prompt, json_schema_input_type=PromptText | _Prompts)]
    suffix: Annotated[None, DefaultWhen()] = None
    """Refused when given: rbee does not fill in text between a prompt and a suffix."""
    logprobs: Annotated[int, Field(strict=True, ge=0, le=MAX_COMPLETION_LOGPROBS)] | None = None
    """Alternatives per token (OpenAI's limit is 5); the sampled token's own comes too."""
    echo: Annotated[Literal[False], DefaultWhen()] = False
    """Refused when true: rbee does not return the prompt with the completion."""
    best_of: Annotated[Literal[1], DefaultWhen()] = 1
    """Refused above 1: rbee does not generate candidates to rank (ask for `n` choices instead)."""

    @property
    def logprob_alternatives(self) -> int | None:
        """The completions API's `logprobs`."""
        return self.logprobs

    def worker_body(self) -> dict[str, Any]:
        """What the worker gets: the prompt and the generation settings."""
        return {"prompt": self.prompt, **self.generation_wire()}


class ChatCompletionRequest(OpenAIBody, ToolParams):
    """`POST /v1/chat/completions`."""

    messages: Messages
    modalities: Annotated[tuple[Literal["text"], ...], DefaultWhen()] = ("text",)
    """Only `["text"]`: rbee answers in text, never audio."""
    audio: Annotated[None, DefaultWhen()] = None
    """Refused when given: no audio output."""
    prediction: Annotated[None, DefaultWhen()] = None
    """Refused when given: rbee does no predicted-output decoding."""
    web_search_options: Annotated[None, DefaultWhen()] = None
    """Refused when given: rbee does not search the web."""
    reasoning_effort: Annotated[None, DefaultWhen()] = None
    """Refused when given: the models rbee runs take no reasoning budget."""
    verbosity: Annotated[None, DefaultWhen()] = None
    """Refused when given: rbee has no verbosity control (use `max_tokens`)."""
    logprobs: Annotated[StrictBool, DefaultWhen()] = False
    top_logprobs: Annotated[int, Field(strict=True, ge=0, le=MAX_TOP_LOGPROBS)] | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs"):
            raise refusal("needs `logprobs` set to true")
        return value

    @property
    def logprob_alternatives(self) -> int | None:
        """`top_logprobs` (0 when absent) once `logprobs` is true."""
        return (self.top_logprobs or 0) if self.logprobs else None

    def worker_body(self) -> dict[str, Any]:
        """What the worker gets: the messages, the tools and the generation settings."""
        messages = [message.model_dump(exclude_none=True) for message in self.messages]
        return {"messages": messages, **self.tool_wire(), **self.generation_wire()}
