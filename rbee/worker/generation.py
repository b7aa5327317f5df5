"""What a worker asks of an inference engine, and the interface both engines offer.

An engine owns the llama.cpp state and the threads that touch it. The event loop hands it
jobs; the engine calls each job's `emit` on its own thread and settles the returned future
when the generation ends, however it ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from rbee.common.wire import StopReason
from rbee.common.wire_requests import SamplingParams

EmitToken = Callable[[int, str], None]
Progress = Callable[[float], None]


@dataclass(frozen=True)
class Outcome:
    """How a generation ended."""

    tokens_out: int
    stop_reason: StopReason


@dataclass(frozen=True)
class LoadSpec:
    """What to load and how many generations must run at once."""

    model_path: str
    slots: int
    ctx_size: int
    """Context tokens of each sequence (prompt plus output)."""
    threads: int | None
    gpu_layers: int = 0
    """Layers offloaded to the GPUs (`gpu_params.ALL_LAYERS`: every one; 0: the CPU only)."""
    device: int = 0
    """The main GPU among the visible ones."""
    split_mode: str = "none"
    """none (every offloaded layer on `device`), layer or row (split over the visible GPUs)."""
    tensor_split: tuple[float, ...] | None = None
    """Each visible GPU's share of a split model."""
    on_progress: Progress | None = None
    """Called from the loading thread with the share of the model's tensors loaded, as llama.cpp's
    loading progress callback reports it (the batch engine; the simple engine reports per slot)."""

    @property
    def on_gpu(self) -> bool:
        """True when some layers go to a GPU."""
        return self.gpu_layers > 0


@dataclass(eq=False)
class Job:
    """One generation as an engine runs it."""

    prompt_tokens: list[int]
    params: SamplingParams
    stops: tuple[str, ...]
    cancel: threading.Event
    emit: EmitToken
    """Called on the engine's thread once per generated token with the text it releases."""


class Engine(Protocol):
    """A loaded model that runs up to `slots` generations at once."""

    context_tokens: int
    """Context tokens one generation may use (prompt plus output)."""
    chat_template: str | None

    def tokenize(self, text: str, parse_special: bool) -> list[int]:
        """Prompt tokens with BOS; special tokens parsed only for rendered chat templates."""
        ...

    def special_texts(self) -> tuple[str, str]:
        """The text of the BOS and EOS tokens ('' for a token the model lacks)."""
        ...

    def start(self, slot: int, job: Job) -> Future[Outcome]:
        """Begin generating for `job` in slot `slot` (which the caller holds)."""
        ...

    def shutdown(self) -> None:
        """Stop the engine's threads once their current work returns; start nothing new."""
        ...
