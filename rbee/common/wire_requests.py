"""Request bodies one rbee program sends another (DESIGN.md, "Wire contracts"), as pydantic
models: the daemons' calls to each other and the keeper CLI's native calls to the queen.

`SamplingParams` is shared by every inference body (the queen's native and OpenAI routes, the
worker's `/v1/inference`, `rbee infer`). A body's `parse` validates it or raises the 400
`INVALID_REQUEST` of `request_body`; unknown fields are ignored.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, StrictInt, StrictStr, model_validator

from rbee.common import json_depth
from rbee.common.request_body import RequestBody, refusal
from rbee.common.request_fields import (
    Backend,
    BackendPolicy,
    DefaultWhen,
    DeviceId,
    HttpBaseUrl,
    Identifier,
    MessageText,
    ModelRef,
    NodeName,
    Port,
    PromptText,
    Sha256,
    Slots,
    StopText,
)
from rbee.common.response_format import ResponseFormat
from rbee.common.tunables import http_limits
from rbee.common.validation import (
    MAX_CHOICES,
    MAX_GPU_LAYERS,
    MAX_HISTORY_TOOL_CALLS,
    MAX_KEEP_ALIVE_S,
    MAX_LOGIT_BIAS,
    MAX_LOGIT_BIAS_ENTRIES,
    MAX_MESSAGES,
    MAX_OPENAI_PENALTY,
    MAX_PROMPT_CHARS,
    MAX_REPEAT_PENALTY,
    MAX_SEED,
    MAX_SLOTS,
    MAX_STOP_SEQUENCES,
    MAX_TEMPLATE_CHARS,
    MAX_TOKEN_ID_DIGITS,
    MAX_TOKENS_LIMIT,
    MAX_TOP_K,
    MAX_TOP_LOGPROBS,
    RANDOM_SEED,
)
from rbee.common.wire import WorkerState
from rbee.common.wire_tools import ToolCallId, ToolCallRef, ToolName, ToolParams


def _one_or_list(value: Any) -> Any:
    """OpenAI's `stop`: one string stands for a list of one."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise refusal(f"must be a string or a list of at most {MAX_STOP_SEQUENCES} strings")
    return value


_StopList = Annotated[list[StopText], Field(max_length=MAX_STOP_SEQUENCES)]
Stop = Annotated[
    tuple[StopText, ...],
    Field(max_length=MAX_STOP_SEQUENCES),
    BeforeValidator(_one_or_list, json_schema_input_type=StopText | _StopList),
    DefaultWhen(),
]


def _number(low: float, high: float, default: float, low_open: bool = False) -> Any:
    """A finite number in [low, high] (`(low, high]` when `low_open`); `null` means `default`."""
    bound = {"gt": low} if low_open else {"ge": low}
    return Annotated[float, Field(strict=True, le=high, allow_inf_nan=False, **bound), DefaultWhen()]


_Temperature = _number(0, 2, 0.7)
_Probability = _number(0, 1, 0.95)
_RepeatPenalty = _number(0, MAX_REPEAT_PENALTY, 1.0, low_open=True)
_Penalty = _number(-MAX_OPENAI_PENALTY, MAX_OPENAI_PENALTY, 0.0)
_TOKEN_ID = re.compile(rf"[0-9]{{1,{MAX_TOKEN_ID_DIGITS}}}")


def _logit_bias(value: Any) -> Any:
    """Check every entry here, so that a refusal names `logit_bias` and never echoes a key."""
    if not isinstance(value, dict):
        raise refusal("must be an object of token ids to numbers")
    if len(value) > MAX_LOGIT_BIAS_ENTRIES:
        raise refusal(f"must name at most {MAX_LOGIT_BIAS_ENTRIES} tokens")
    for key, bias in value.items():
        if not _TOKEN_ID.fullmatch(key):
            raise refusal("must have token ids (strings of digits) as keys")
        number = isinstance(bias, int | float) and not isinstance(bias, bool)
        if not number or not math.isfinite(bias) or abs(bias) > MAX_LOGIT_BIAS:
            raise refusal(f"must map each token to a number from -{MAX_LOGIT_BIAS:g} to {MAX_LOGIT_BIAS:g}")
    return {key: float(bias) for key, bias in value.items()}


LogitBias = Annotated[dict[str, float], BeforeValidator(_logit_bias), DefaultWhen()]
"""OpenAI's `logit_bias`: token ids (as strings) to a bias added to their logits."""


class SamplingParams(RequestBody):
    """Generation settings common to every inference API; `null` means the default."""

    max_tokens: Annotated[int, Field(strict=True, ge=1, le=MAX_TOKENS_LIMIT)] | None = None
    """None: until the end of text or a full context (the worker's `max_output_tokens` caps it)."""
    temperature: _Temperature = 0.7
    top_p: _Probability = 0.95
    top_k: Annotated[int, Field(strict=True, ge=0, le=MAX_TOP_K), DefaultWhen()] = 40
    """llama-server's extension: keep the `top_k` likeliest tokens (0: all)."""
    min_p: _Probability = 0.05
    """llama-server's extension: drop tokens less likely than `min_p` times the likeliest."""
    repeat_penalty: _RepeatPenalty = 1.0
    """llama-server's extension: divides the logit of a recently seen token (1: off)."""
    presence_penalty: _Penalty = 0.0
    frequency_penalty: _Penalty = 0.0
    logit_bias: LogitBias = {}
    seed: Annotated[int, Field(strict=True, ge=RANDOM_SEED, le=MAX_SEED)] | None = None
    """The sampler's seed; None or -1: a random one."""
    stop: Stop = ()
    ignore_eos: StrictBool = False
    n_probs: Annotated[int, Field(strict=True, ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    """llama-server's name: report each token's log probability and its `n_probs` likeliest
    alternatives; None: no log probabilities."""
    response_format: ResponseFormat | None = None
    """OpenAI's structured output: the worker constrains the output to JSON (or a schema)."""

    @property
    def fixed_seed(self) -> int | None:
        """The seed asked for; None when it is to be random."""
        return None if self.seed is None or self.seed == RANDOM_SEED else self.seed

    def sampling_wire(self) -> dict[str, Any]:
        """The sampling fields alone, as JSON for the worker (also of a body that extends them)."""
        return self.model_dump(mode="json", include=set(SamplingParams.model_fields), by_alias=True)


_MEDIA_PARTS = ("image_url", "input_audio", "file")


def _text_of_parts(value: Any) -> Any:
    """OpenAI's content parts: the texts of `{"type": "text"}` parts, joined by newlines."""
    if not isinstance(value, list):
        return value
    texts = []
    for part in value:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            named = kind if kind in _MEDIA_PARTS else "a non-text"
            raise refusal(f"may hold only text parts ({named} part given): rbee serves text models only")
        texts.append(part.get("text"))
    if not all(isinstance(text, str) for text in texts):
        raise refusal("text parts must each carry a 'text' string")
    return "\n".join(texts)


def _developer_is_system(value: Any) -> Any:
    """OpenAI's `developer` role is the `system` role of older models and of chat templates."""
    return "system" if value == "developer" else value


_HistoryCalls = Annotated[list[ToolCallRef], Field(min_length=1, max_length=MAX_HISTORY_TOOL_CALLS)]


class ChatMessage(RequestBody):
    """One message of a chat: `developer` is read as `system`, content parts are joined; an
    assistant message may carry `tool_calls` (its content null), a `tool` message answers one."""

    role: Annotated[Literal["system", "user", "assistant", "tool"], BeforeValidator(_developer_is_system)]
    content: Annotated[MessageText | None, BeforeValidator(_text_of_parts)] = None
    tool_calls: _HistoryCalls | None = None
    tool_call_id: ToolCallId | None = None
    name: ToolName | None = None
    """The author's name (OpenAI's `name`), passed to the template."""

    @model_validator(mode="after")
    def _shape_of_role(self) -> ChatMessage:
        if self.tool_calls is not None and self.role != "assistant":
            raise refusal("'tool_calls' may only be in an assistant message")
        if self.role == "tool" and self.tool_call_id is None:
            raise refusal("a tool message needs its 'tool_call_id'")
        if self.content is None and self.tool_calls is None:
            raise refusal("'content' may be null only in an assistant message with 'tool_calls'")
        return self

    def template_message(self) -> dict[str, Any]:
        """The message as Hugging Face chat templates read it (tool arguments as objects)."""
        message: dict[str, Any] = {"role": self.role, "content": self.content or ""}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": call.id, "type": "function",
                 "function": {"name": call.function.name,
                              "arguments": _arguments_object(call.function.arguments)}}
                for call in self.tool_calls
            ]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            message["name"] = self.name
        return message


def _arguments_object(arguments: str) -> Any:
    """A call's JSON arguments parsed (templates render them with `tojson`), else the text itself."""
    try:
        return json_depth.loads(arguments, http_limits().json_max_depth)
    except ValueError:
        return arguments


def _within_prompt_cap(messages: list[ChatMessage]) -> list[ChatMessage]:
    if sum(len(message.content or "") for message in messages) > MAX_PROMPT_CHARS:
        raise refusal(f"must hold at most {MAX_PROMPT_CHARS} characters in all")
    return messages


Messages = Annotated[
    list[ChatMessage], Field(min_length=1, max_length=MAX_MESSAGES), AfterValidator(_within_prompt_cap)
]


Choices = Annotated[int, Field(strict=True, ge=1, le=MAX_CHOICES), DefaultWhen()]
"""OpenAI's `n`: how many answers to generate for one prompt."""


class InferenceRequest(SamplingParams):
    """A worker's `POST /v1/inference`: a task id (made up when absent), sampling, and how many
    choices to generate from the one prompt."""

    task_id: Annotated[Identifier, DefaultWhen((None, ""))] = Field(default_factory=lambda: uuid.uuid4().hex)
    n: Choices = 1


class PromptInference(InferenceRequest):
    """An inference of a plain prompt."""

    prompt: PromptText


class ChatInference(InferenceRequest, ToolParams):
    """An inference of chat messages (rendered with the model's chat template), maybe with tools."""

    messages: Messages


def parse_inference(body: Mapping[str, Any]) -> PromptInference | ChatInference:
    """A worker's inference body: chat when it carries `messages`, else a `prompt`."""
    return (ChatInference if "messages" in body else PromptInference).parse(body)


class TaskRequest(SamplingParams):
    """`POST /v2/tasks`: a prompt for a model, on a named node or where the queen chooses."""

    model: ModelRef
    prompt: PromptText
    node: NodeName | None = None
    backend: BackendPolicy | None = None
    """None: the queen's policy for the model (`model_backends`, else `backend`)."""
    n: Annotated[Literal[1], DefaultWhen()] = 1
    """Refused above 1: the native event stream has no shape for several choices (the OpenAI
    routes take `n`)."""

    def worker_body(self) -> dict[str, Any]:
        """What the worker gets: the prompt and the sampling settings."""
        return {"prompt": self.prompt, **self.sampling_wire()}


class NodeRemove(RequestBody):
    """`POST /v2/registry/beehives/remove`."""

    name: NodeName


class WorkerTuning(RequestBody):
    """How a spawned worker runs beyond its model and slots (a model table alias's settings);
    None: the hive's own setting."""

    ctx_size: Annotated[int, Field(strict=True, ge=1)] | None = None
    """Context tokens per slot (None: the hive's `ctx_size`)."""
    gpu_layers: Annotated[int, Field(strict=True, ge=0, le=MAX_GPU_LAYERS)] | None = None
    """Layers on the GPU (None: the hive's `model_gpu_layers`, else all that fit)."""
    chat_template: Annotated[str, Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)] | None = None
    """A Jinja chat template used instead of the GGUF's own."""
    keep_alive_s: Annotated[float, Field(gt=0, le=MAX_KEEP_ALIVE_S)] | None = None
    """Idle time after which the hive stops the worker (None: the tunable `idle_unload_s`)."""


class SpawnRequest(RequestBody):
    """A hive's `POST /v1/workers/spawn`."""

    model: ModelRef
    slots: Slots = 1
    backend: BackendPolicy = "auto"
    device: DeviceId | None = None
    embedding: StrictBool = False
    """True: a worker that serves `/v1/embeddings` (and no generation) for the model."""
    alias: ModelRef | None = None
    """The model table alias the queen serves the worker under (None: its model's name)."""
    tuning: WorkerTuning = WorkerTuning()


class WorkerRef(RequestBody):
    """A body naming one worker: the hive's `/v1/workers/stop`, the queen's `/v2/workers/shutdown`."""

    worker_id: Identifier


class WorkerReady(WorkerRef):
    """A worker's `POST /v1/workers/ready` to its hive."""

    port: Port


class WorkerHeartbeat(WorkerRef):
    """A worker's `POST /v1/heartbeat` to its hive."""

    state: Literal["idle", "busy", "draining"]
    slots_free: Annotated[int, Field(strict=True, ge=0, le=MAX_SLOTS)]
    decode_stalled: StrictBool = False
    tokens_generated: Annotated[int, Field(strict=True, ge=0)] = 0
    """Tokens generated since the worker started (the hive's least-recently-used order reads it)."""


class ModelDownload(RequestBody):
    """A hive's `POST /v1/models/download`: an `hf:` or `https://` ref, optionally its digest."""

    model: ModelRef
    sha256: Sha256 | None = None


class ModelPull(ModelDownload):
    """The queen's `POST /v2/models/pull`: a download onto one node (default: the local one)."""

    node: NodeName = "localhost"

    def download(self) -> ModelDownload:
        """What the node's hive is asked to do."""
        return ModelDownload(model=self.model, sha256=self.sha256)


class ModelRemove(RequestBody):
    """A hive's `POST /v1/models/remove`."""

    name: ModelRef


class WorkerReport(RequestBody):
    """One worker in a hive's heartbeat."""

    worker_id: StrictStr
    model: StrictStr
    url: StrictStr
    slots: StrictInt
    state: WorkerState
    restarts: StrictInt = 0
    backend: Backend = "cpu"
    device: DeviceId | None = None
    embedding: StrictBool = False
    alias: StrictStr | None = None


class HiveHeartbeat(RequestBody):
    """A hive's `POST /v2/heartbeat` to the queen: itself and every worker it owns."""

    hive_url: HttpBaseUrl
    version: Annotated[StrictStr, DefaultWhen()] = ""
    workers: list[WorkerReport]
