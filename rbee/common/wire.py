"""Typed messages between rbee's daemons (DESIGN.md, "Wire contracts").

Three families of SSE events, each event a frozen dataclass that knows its JSON object
(`to_wire`) and is rebuilt from one (`from_wire`); each family has a parser that picks the
class from the object's `type`: the native token stream (`parse_event`), a worker's loading
progress (`parse_loading_event`) and a hive's download progress (`parse_download_event`).
Also the stop reasons and worker states those messages carry, and one constructor for each
error the daemons send. Nothing outside this module matches an event's `type` as a string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Self, TypeVar

from rbee.common.errors import ApiError


class StopReason(StrEnum):
    """Why a generation ended: an `end` event's `stop_reason`."""

    MAX_TOKENS = "max_tokens"
    EOS = "eos"
    STOP = "stop"
    CANCELLED = "cancelled"
    ERROR = "error"


class WorkerState(StrEnum):
    """A worker's state: `loading → idle ⇄ busy → draining → stopped`, `crashed` and `unhealthy`
    as its hive sees it, and `failed` for one that could not load or that its hive gave up
    restarting."""

    LOADING = "loading"
    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"
    STOPPED = "stopped"
    CRASHED = "crashed"
    UNHEALTHY = "unhealthy"
    FAILED = "failed"


class WireError(ValueError):
    """A received event that is not one of its family's, or lacks what its type needs."""


@dataclass(frozen=True, slots=True)
class WireEvent:
    """One SSE event. A received one keeps the bytes it arrived as (`raw`), so relaying it
    unchanged costs no encoding; a changed copy (`dataclasses.replace`) is encoded afresh."""

    TYPE: ClassVar[str]
    raw: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def to_wire(self) -> dict[str, Any]:
        """The event's JSON object."""
        return {"type": self.TYPE}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """The event of a received JSON object of this type (other keys are ignored)."""
        return cls()

    def encode(self) -> bytes:
        """The event as compact JSON: the received bytes when it came over the wire unchanged."""
        if self.raw is not None:
            return self.raw
        return json.dumps(self.to_wire(), separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Started(WireEvent):
    """A generation has a slot. `node` and `model` are the queen's additions, sent together
    once it placed the task (`node` is None when the worker's hive is none of its nodes)."""

    TYPE: ClassVar[str] = "started"
    task_id: str
    worker_id: str
    slot: int
    prompt_tokens: int
    deadline: str | None = None
    node: str | None = None
    model: str | None = None
    backend: str | None = None
    """Where the worker runs (`cpu`, `cuda`): the queen's addition, with `model`."""
    device: int | None = None
    """The GPU index on the worker's node (None on the CPU)."""
    queue_wait_ms: int | None = None
    """How long the task waited at the queen for this worker's slot (queue, spawn and load)."""

    def to_wire(self) -> dict[str, Any]:
        """The event's JSON object."""
        wire = {"type": self.TYPE, "task_id": self.task_id, "worker_id": self.worker_id,
                "slot": self.slot, "prompt_tokens": self.prompt_tokens, "deadline": self.deadline}
        if self.model is not None:
            wire.update(node=self.node, model=self.model, backend=self.backend, device=self.device)
        if self.queue_wait_ms is not None:
            wire["queue_wait_ms"] = self.queue_wait_ms
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """The event of a received JSON object."""
        return cls(data["task_id"], data["worker_id"], data["slot"], data["prompt_tokens"],
                   data.get("deadline"), data.get("node"), data.get("model"), data.get("backend"),
                   data.get("device"), data.get("queue_wait_ms"))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A token's text, its log probability and its UTF-8 bytes (a token may end mid-character)."""

    token: str
    logprob: float
    bytes: tuple[int, ...]

    def to_wire(self) -> dict[str, Any]:
        """The candidate's JSON object."""
        return {"token": self.token, "logprob": self.logprob, "bytes": list(self.bytes)}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """The candidate of a received JSON object."""
        return cls(data["token"], data["logprob"], tuple(data["bytes"]))


@dataclass(frozen=True, slots=True)
class TokenLogprobs:
    """The log probabilities of one generated token: the one sampled and the likeliest tokens of
    that step, from the log-softmax of the model's raw logits over the whole vocabulary (before
    logit bias, penalties, temperature or grammar)."""

    sampled: Candidate
    top: tuple[Candidate, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        """The log probabilities' JSON object."""
        return {**self.sampled.to_wire(), "top_logprobs": [c.to_wire() for c in self.top]}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """The log probabilities of a received JSON object."""
        return cls(Candidate.from_wire(data), tuple(Candidate.from_wire(c) for c in data["top_logprobs"]))


@dataclass(frozen=True, slots=True)
class Token(WireEvent):
    """One generated token's text and its index in the output; its log probabilities when the
    request asked for them (`n_probs`), and the choice it belongs to when it asked for `n` > 1."""

    TYPE: ClassVar[str] = "token"
    token: str
    index: int
    logprobs: TokenLogprobs | None = None
    choice: int = 0

    def to_wire(self) -> dict[str, Any]:
        """The event's JSON object."""
        wire: dict[str, Any] = {"type": self.TYPE, "token": self.token, "index": self.index}
        if self.logprobs is not None:
            wire["logprobs"] = self.logprobs.to_wire()
        if self.choice:
            wire["choice"] = self.choice
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """The event of a received JSON object."""
        logprobs = data.get("logprobs")
        return cls(data["token"], data["index"],
                   TokenLogprobs.from_wire(logprobs) if logprobs is not None else None,
                   data.get("choice", 0))


@dataclass(frozen=True, slots=True)
class ToolCall(WireEvent):
    """A whole tool call the worker parsed from the output: the `index`-th of the answer, its id
    (`call_…`), the function's name and its arguments as a JSON string."""

    TYPE: ClassVar[str] = "tool_call"
    index: int
    id: str
    name: str
    arguments: str

    def to_wire(self) -> dict[str, Any]:
        """The event's JSON object."""
        return {"type": self.TYPE, "index": self.index, "id": self.id, "name": self.name,
                "arguments": self.arguments}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """The event of a received JSON object."""
        return cls(data["index"], data["id"], data["name"], data["arguments"])


@dataclass(frozen=True, slots=True)
class End(WireEvent):
    """The generation finished: how many tokens (of every choice together), why, and how fast."""

    TYPE: ClassVar[str] = "end"
    tokens_out: int
    stop_reason: StopReason
    duration_ms: float
    tokens_per_second: float = 0.0
    stop_reasons: tuple[StopReason, ...] = ()
    """Each choice's stop reason, when the request asked for `n` > 1 (`stop_reason` is the first's)."""
    prompt_tokens_cached: int = 0
    """Prompt tokens the worker took from KV cells it had cached instead of decoding them."""

    def to_wire(self) -> dict[str, Any]:
        """The event's JSON object."""
        wire: dict[str, Any] = {"type": self.TYPE, "tokens_out": self.tokens_out,
                                "stop_reason": self.stop_reason, "duration_ms": self.duration_ms,
                                "tokens_per_second": self.tokens_per_second}
        if self.stop_reasons:
            wire["stop_reasons"] = list(self.stop_reasons)
        if self.prompt_tokens_cached:
            wire["prompt_tokens_cached"] = self.prompt_tokens_cached
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """The event of a received JSON object."""
        return cls(data["tokens_out"], StopReason(data["stop_reason"]), data["duration_ms"],
                   data.get("tokens_per_second", 0.0),
                   tuple(StopReason(reason) for reason in data.get("stop_reasons", ())),
                   data.get("prompt_tokens_cached", 0))

    def choice_stop_reasons(self, choices: int) -> tuple[StopReason, ...]:
        """The stop reason of each of `choices` choices."""
        return self.stop_reasons or (self.stop_reason,) * choices


@dataclass(frozen=True, slots=True)
class Error(WireEvent):
    """The generation failed after the stream began; `code` is an UPPER_SNAKE error code."""

    TYPE: ClassVar[str] = "error"
    code: str
    message: str

    def to_wire(self) -> dict[str, Any]:
        """The event's JSON object."""
        return {"type": self.TYPE, "code": self.code, "message": self.message}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """The event of a received JSON object."""
        return cls(data["code"], data["message"])

    def to_api_error(self, status: int, details: dict[str, Any] | None = None) -> ApiError:
        """The same error as an HTTP error response, for when no stream is open yet."""
        return ApiError(status, self.code, self.message, details)


TaskEvent = Started | Token | ToolCall | End | Error
"""An event of the native token stream."""


def worker_crashed() -> Error:
    """The worker went away before it finished the answer."""
    return Error("WORKER_CRASHED", "the worker stopped before finishing the answer")


def deadline_exceeded() -> Error:
    """The request's deadline passed (`X-Request-Deadline`)."""
    return Error("DEADLINE_EXCEEDED", "the request deadline has passed")


def generation_failed() -> Error:
    """The engine failed while generating (a bug or a broken model; the worker logs it)."""
    return Error("GENERATION_FAILED", "generation failed")


@dataclass(frozen=True, slots=True)
class LoadingProgress(WireEvent):
    """A worker's state and the share of its model loaded (0.0 to 1.0)."""

    TYPE: ClassVar[str] = "loading"
    state: WorkerState
    progress: float

    def to_wire(self) -> dict[str, Any]:
        """The event's JSON object."""
        return {"type": self.TYPE, "state": self.state, "progress": self.progress}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """The event of a received JSON object."""
        return cls(WorkerState(data["state"]), data["progress"])


@dataclass(frozen=True, slots=True)
class LoadingReady(WireEvent):
    """The worker loaded its model and serves."""

    TYPE: ClassVar[str] = "ready"


@dataclass(frozen=True, slots=True)
class LoadingFailed(WireEvent):
    """The worker could not load its model (it exits)."""

    TYPE: ClassVar[str] = "failed"


LoadingEvent = LoadingProgress | LoadingReady | LoadingFailed
"""An event of a worker's `/v1/loading/progress` stream."""


@dataclass(frozen=True, slots=True)
class _DownloadStatus(WireEvent):
    """A download job's state and byte counts; the optional keys are sent only when set."""

    id: str
    model: str
    state: str
    bytes_done: int
    bytes_total: int | None
    attempt: int
    bytes_per_s: int | None = None
    last_error: str | None = None
    path: str | None = None
    sha256: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The event's JSON object."""
        wire: dict[str, Any] = {"type": self.TYPE, "id": self.id, "model": self.model, "state": self.state,
                                "bytes_done": self.bytes_done, "bytes_total": self.bytes_total,
                                "attempt": self.attempt}
        if self.bytes_per_s is not None:
            wire["bytes_per_s"] = self.bytes_per_s
        if self.last_error is not None:
            wire["last_error"] = self.last_error
        if self.path is not None:
            wire.update(path=self.path, sha256=self.sha256)
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """The event of a received JSON object (or of a job's own JSON form)."""
        return cls(data["id"], data["model"], data["state"], data["bytes_done"], data["bytes_total"],
                   data["attempt"], data.get("bytes_per_s"), data.get("last_error"), data.get("path"),
                   data.get("sha256"))


@dataclass(frozen=True, slots=True)
class DownloadProgress(_DownloadStatus):
    """A running download's progress."""

    TYPE: ClassVar[str] = "progress"


@dataclass(frozen=True, slots=True)
class DownloadDone(_DownloadStatus):
    """The download finished: the file is at `path` with checksum `sha256`."""

    TYPE: ClassVar[str] = "done"


@dataclass(frozen=True, slots=True)
class DownloadFailed(WireEvent):
    """The download gave up, with the HTTP status and error it would have answered."""

    TYPE: ClassVar[str] = "error"
    id: str
    model: str
    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """The event's JSON object."""
        return {"type": self.TYPE, "id": self.id, "model": self.model, "status": self.status,
                "code": self.code, "message": self.message, "details": self.details}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """The event of a received JSON object."""
        return cls(data["id"], data["model"], data["status"], data["code"], data["message"],
                   data.get("details") or {})

    def to_api_error(self) -> ApiError:
        """The download's error as the hive would answer it."""
        return ApiError(self.status, self.code, self.message, self.details)


DownloadEvent = DownloadProgress | DownloadDone | DownloadFailed
"""An event of a hive's `/v1/models/download/progress` stream."""

E = TypeVar("E", bound=WireEvent)
_TASK_EVENTS: dict[str, type[TaskEvent]] = {cls.TYPE: cls for cls in (Started, Token, ToolCall, End, Error)}
_LOADING_EVENTS: dict[str, type[LoadingEvent]] = {
    cls.TYPE: cls for cls in (LoadingProgress, LoadingReady, LoadingFailed)
}
_DOWNLOAD_EVENTS: dict[str, type[DownloadEvent]] = {
    cls.TYPE: cls for cls in (DownloadProgress, DownloadDone, DownloadFailed)
}


def _parse(family: Mapping[str, type[E]], data: Mapping[str, Any], raw: bytes | None) -> E:
    kind = data.get("type")
    cls = family.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise WireError(f"unknown event type {kind!r}; expected one of {', '.join(family)}")
    try:
        event = cls.from_wire(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"malformed {kind} event: {exc!r}") from exc
    if raw is not None:
        object.__setattr__(event, "raw", raw)
    return event


def parse_event(data: Mapping[str, Any], raw: bytes | None = None) -> TaskEvent:
    """The token-stream event of a received JSON object; `raw`, the bytes it arrived as, is kept
    for relaying it unchanged. Raises WireError for anything else."""
    return _parse(_TASK_EVENTS, data, raw)


def parse_loading_event(data: Mapping[str, Any]) -> LoadingEvent:
    """The loading-progress event of a received JSON object; WireError for anything else."""
    return _parse(_LOADING_EVENTS, data, None)


def parse_download_event(data: Mapping[str, Any]) -> DownloadEvent:
    """The download-progress event of a received JSON object; WireError for anything else."""
    return _parse(_DOWNLOAD_EVENTS, data, None)
