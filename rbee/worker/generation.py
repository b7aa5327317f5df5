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

from rbee.common.tunables import Timings
from rbee.common.wire import StopReason, TokenLogprobs
from rbee.common.wire_requests import SamplingParams

EmitToken = Callable[[int, str, TokenLogprobs | None], None]
Progress = Callable[[float], None]


@dataclass(frozen=True)
class Outcome:
    """How a generation ended."""

    tokens_out: int
    stop_reason: StopReason
    prompt_tokens_cached: int = 0
    """Prompt tokens taken from KV cells already in the cache instead of decoded."""


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
    prefill_chunk_tokens: int = Timings.worker_prefill_chunk_tokens
    """Prompt tokens a batched step takes while other sequences decode
    (`Timings.worker_prefill_chunk_tokens`)."""
    prefix_copy_min_tokens: int = Timings.worker_prefix_copy_min_tokens
    """How many more of a prompt's leading tokens another sequence's cells must hold than the
    joining sequence's own for the batched engine to copy them (`Timings.worker_prefix_copy_min_tokens`)."""
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
    """Called on the engine's thread once per generated token with the text it releases and,
    when `params.n_probs` asks for them, the token's log probabilities."""
    grammar: str | None = None
    """GBNF text (root rule `root`) every sampled token must follow; None: free text."""
    grammar_triggers: tuple[str, ...] = ()
    """Regular expressions that switch the grammar on (a lazy grammar: free text until then);
    empty: the grammar holds from the first token. llama.cpp matches each against the whole
    output so far and holds the text from the first capture group on to the grammar, so write
    them as llama.cpp's chat code does: `[\\s\\S]*?(<tool_call>)[\\s\\S]*`."""
    follows: int | None = None
    """The slot of another job of the same request and prompt whose prompt cells this one copies
    instead of decoding the prompt again (`n` > 1); None: it decodes its own prompt."""


class Engine(Protocol):
    """A loaded model that runs up to `slots` generations at once."""

    context_tokens: int
    """Context tokens one generation may use (prompt plus output)."""
    vocab_size: int
    """Tokens in the model's vocabulary."""
    chat_template: str | None
    prompt_tokens_reused: int
    """Prompt tokens taken from cells an earlier generation left in the KV cache, since start."""
    prompt_tokens_decoded: int
    """Prompt tokens decoded since start."""

    def tokenize(self, text: str, parse_special: bool, add_bos: bool = True) -> list[int]:
        """Prompt tokens, with BOS unless told (a rendered template that wrote BOS itself);
        special tokens parsed only for rendered chat templates."""
        ...

    def special_texts(self) -> tuple[str, str]:
        """The text of the BOS and EOS tokens ('' for a token the model lacks)."""
        ...

    def slot_for(self, prompt_tokens: list[int], free: list[int]) -> int:
        """Which of the `free` slots to run `prompt_tokens` in (the one that may hold its prefix)."""
        ...

    def start(self, slot: int, job: Job) -> Future[Outcome]:
        """Begin generating for `job` in slot `slot` (which the caller holds)."""
        ...

    def start_all(self, starts: list[tuple[int, Job]]) -> list[Future[Outcome]]:
        """Begin generating for each `(slot, job)` together: one request's choices, the first
        first (those that follow it copy its prompt cells)."""
        ...

    def shutdown(self) -> None:
        """Stop the engine's threads once their current work returns; start nothing new."""
        ...
