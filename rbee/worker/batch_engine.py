"""The batched engine (the default): one model, one context, every active sequence advanced
together in one `llama_decode` batch per step.

One thread owns the llama context: it loads the model and then runs the decode loop; nothing
else touches the context. The event loop hands it work through a thread-safe queue. Each
step puts the next token of every decoding sequence, plus prompt tokens of sequences that
joined, into one batch, decodes it, and samples each sequence's next token with that
sequence's own sampler (its own parameters and seed). Sequences join (prompt prefill) and
leave (end of generation, stop sequence, max tokens, cancellation) between steps; a finished
sequence's KV cells are cleared so its slot starts clean. A slot is a sequence id, so the
slot count costs KV cache memory, not threads or copies of the weights.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import random
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from rbee.common.wire import StopReason
from rbee.common.wire_requests import SamplingParams
from rbee.worker import engine
from rbee.worker.faults import Faults
from rbee.worker.generation import Job, LoadSpec, Outcome, Progress
from rbee.worker.token_rules import TokenRules

log = logging.getLogger(__name__)
BATCH_TOKENS = 512
"""Tokens one `llama_decode` call takes (and the most sequences a worker can have)."""
PREFILL_TOKENS_WHILE_DECODING = 128
"""Prompt tokens a step takes while other sequences decode: a long prompt then delays their
next token by a chunk's time, not by the whole prompt's."""
SHUTDOWN_JOIN_S = 2.0
"""How long shutting down waits for the decode loop to leave its current step."""
ALL_GPU_LAYERS = 0x7FFFFFFF
# llama-cpp-python's own defaults for what rbee's API does not expose
TOP_K = 40
MIN_P = 0.05
TYPICAL_P = 1.0


@dataclass(eq=False)
class _Sequence:
    """A generation in progress; touched only by the decode loop's thread."""

    seq_id: int
    job: Job
    done: Future[Outcome]
    rules: TokenRules
    sampler: Any = None
    pending: list[int] = field(init=False)
    """Tokens still to decode: the rest of the prompt, then the last sampled token."""
    position: int = 0
    logits_at: int = -1
    """Index in the current batch of the token whose logits this sequence samples from."""

    def __post_init__(self) -> None:
        self.pending = list(self.job.prompt_tokens)

    @property
    def decoding(self) -> bool:
        """True once the whole prompt is in the KV cache."""
        return self.position >= len(self.job.prompt_tokens)


def _sampler(params: SamplingParams) -> Any:
    """A sampler chain as llama-cpp-python's `generate` builds it, seeded for this sequence."""
    from llama_cpp import _internals

    sampler = _internals.LlamaSampler()
    if params.temperature == 0.0:
        sampler.add_greedy()
        return sampler
    sampler.add_top_k(TOP_K)
    sampler.add_typical(TYPICAL_P, 1)
    sampler.add_top_p(params.top_p, 1)
    sampler.add_min_p(MIN_P, 1)
    sampler.add_temp(params.temperature)
    sampler.add_dist(params.seed if params.seed is not None else random.randrange(2**31))
    return sampler


def _load(spec: LoadSpec) -> tuple[Any, Any]:
    """The model and one context with a KV cache of `ctx_size` tokens for each of `slots`
    sequences (kept apart: sequences attend only to their own cells)."""
    import llama_cpp
    from llama_cpp import _internals

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    if spec.slots > min(llama_cpp.llama_max_parallel_sequences(), BATCH_TOKENS):
        raise ValueError(f"llama.cpp runs at most {llama_cpp.llama_max_parallel_sequences()} sequences")
    llama_cpp.llama_backend_init()
    model_params = llama_cpp.llama_model_default_params()
    model_params.n_gpu_layers = ALL_GPU_LAYERS if spec.on_gpu else 0
    model_params.main_gpu = spec.device
    if engine.amx_compiled_in():
        model_params.use_extra_bufts = False  # see engine._without_extra_buffer_types
    model = _internals.LlamaModel(path_model=spec.model_path, params=model_params, verbose=False)
    threads = spec.threads or max(1, os.cpu_count() or 1)
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = spec.ctx_size * spec.slots
    params.n_seq_max = spec.slots
    params.n_batch = params.n_ubatch = BATCH_TOKENS
    params.n_threads = params.n_threads_batch = threads
    params.kv_unified = False
    try:
        context = _internals.LlamaContext(model=model, params=params, verbose=False)
    except BaseException:
        model.close()
        raise
    return model, context


class BatchEngine:
    """Runs up to `slots` sequences at once in one llama context, owned by one thread."""

    def __init__(self, spec: LoadSpec, faults: Faults) -> None:
        self._spec = spec
        self._faults = faults
        self._queue: queue.SimpleQueue[tuple[int, Job, Future[Outcome]] | None] = queue.SimpleQueue()
        self._active: dict[int, _Sequence] = {}
        self._thread = threading.Thread(target=self._own, name="decode-loop", daemon=True)
        self._loaded: Future[None] = Future()
        self._closed = False
        self._model: Any = None
        self._context: Any = None
        self._batch: Any = None
        self.context_tokens = 0
        self.chat_template: str | None = None

    @classmethod
    async def load(cls, spec: LoadSpec, faults: Faults, progress: Progress) -> BatchEngine:
        """Start the decode loop's thread, which loads the model; return once it is loaded."""
        batch_engine = cls(spec, faults)
        batch_engine._thread.start()
        await asyncio.wrap_future(batch_engine._loaded)
        progress(1.0)
        return batch_engine

    def tokenize(self, text: str, parse_special: bool) -> list[int]:
        """Prompt tokens with BOS (the vocabulary is read-only, so any thread may tokenize)."""
        return self._model.tokenize(text.encode("utf-8"), add_bos=True, special=parse_special)

    def special_texts(self) -> tuple[str, str]:
        """The text of the BOS and EOS tokens."""
        return engine.special_texts(self._model)

    def start(self, slot: int, job: Job) -> Future[Outcome]:
        """Queue `job` to join the batch as sequence `slot` at the next step."""
        if self._closed:
            raise RuntimeError("the engine is shut down")
        done: Future[Outcome] = Future()
        self._queue.put((slot, job, done))
        return done

    def shutdown(self) -> None:
        """Cancel every sequence, stop the decode loop and wait (blocking, at most
        `SHUTDOWN_JOIN_S`) for it to free the context; a loop hung by a fault is left behind, and
        its daemon thread does not hold up the process's exit."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join(SHUTDOWN_JOIN_S)

    def _own(self) -> None:
        """The decode loop's thread: load, serve until shut down, free."""
        import llama_cpp

        try:
            self._faults.on_load()
            self._model, self._context = _load(self._spec)
            self._batch = llama_cpp.llama_batch_init(BATCH_TOKENS, 0, 1)
            self.context_tokens = llama_cpp.llama_n_ctx_seq(self._context.ctx)
            self.chat_template = engine.chat_template_of(self._model.metadata())
        except BaseException as exc:
            self._free()
            self._loaded.set_exception(exc)
            return
        self._loaded.set_result(None)
        try:
            while self._admit(block=not self._active):
                for seq in [s for s in self._active.values() if s.job.cancel.is_set()]:
                    self._finish(seq, StopReason.CANCELLED)
                if self._active:
                    self._guarded_step()
            for seq in list(self._active.values()):
                self._finish(seq, StopReason.CANCELLED)
        finally:
            self._free()

    def _free(self) -> None:
        import llama_cpp

        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        for part in (self._context, self._model):
            if part is not None:
                part.close()

    def _admit(self, block: bool) -> bool:
        """Take queued jobs in as new sequences; False once shutdown was asked for."""
        try:
            item = self._queue.get(block=block)
            while True:
                if item is None:
                    return False
                self._join(*item)
                item = self._queue.get_nowait()
        except queue.Empty:
            return True

    def _join(self, slot: int, job: Job, done: Future[Outcome]) -> None:
        if not done.set_running_or_notify_cancel():
            return
        self._faults.on_generation_start()
        is_end = functools.partial(engine.is_end_of_generation, self._model.vocab)
        rules = TokenRules(job, self.context_tokens, is_end, self._model.detokenize, self._faults.on_token)
        seq = _Sequence(slot, job, done, rules)
        if job.cancel.is_set():
            self._finish(seq, StopReason.CANCELLED)
        elif rules.budget <= 0:
            self._finish(seq, StopReason.MAX_TOKENS)
        else:
            try:
                seq.sampler = _sampler(job.params)
            except Exception as exc:
                done.set_exception(exc)
                return
            self._active[slot] = seq

    def _guarded_step(self) -> None:
        """One step; an engine failure fails the sequences it touched, not the loop."""
        try:
            self._step()
        except Exception as exc:
            log.exception("decode step failed")
            for seq in list(self._active.values()):
                self._drop(seq)
                seq.done.set_exception(exc)

    def _step(self) -> None:
        import llama_cpp

        sequences = list(self._active.values())
        decoding = [s for s in sequences if s.decoding]
        room = BATCH_TOKENS - len(decoding)
        if decoding:
            room = min(room, PREFILL_TOKENS_WHILE_DECODING)
        count = 0
        for seq in decoding:
            count = self._put(seq, 1, count)
        for seq in sequences:
            if not seq.decoding:
                take = min(room, len(seq.pending))
                room -= take
                count = self._put(seq, take, count)
        self._batch.n_tokens = count
        code = llama_cpp.llama_decode(self._context.ctx, self._batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        for seq in sequences:
            if seq.logits_at >= 0:
                token = llama_cpp.llama_sampler_sample(seq.sampler.sampler, self._context.ctx, seq.logits_at)
                self._accept(seq, token)

    def _put(self, seq: _Sequence, take: int, count: int) -> int:
        """Add `take` of the sequence's pending tokens to the batch from index `count`; the
        last one asks for logits when it completes the sequence's input."""
        batch = self._batch
        for token in seq.pending[:take]:
            batch.token[count] = token
            batch.pos[count] = seq.position
            batch.n_seq_id[count] = 1
            batch.seq_id[count][0] = seq.seq_id
            batch.logits[count] = False
            seq.position += 1
            count += 1
        del seq.pending[:take]
        seq.logits_at = count - 1 if take and not seq.pending else -1
        if seq.logits_at >= 0:
            batch.logits[seq.logits_at] = True
        return count

    def _accept(self, seq: _Sequence, token: int) -> None:
        """Hand out a sampled token, or end the sequence on it."""
        stop_reason = seq.rules.accept(token)
        if stop_reason is None:
            seq.pending.append(token)
        else:
            self._finish(seq, stop_reason)

    def _finish(self, seq: _Sequence, stop_reason: StopReason) -> None:
        """End a sequence: release held-back text (unless cancelled), free its cells, settle."""
        outcome = seq.rules.finish(stop_reason)
        self._drop(seq)
        seq.done.set_result(outcome)

    def _drop(self, seq: _Sequence) -> None:
        """Forget a sequence and clear its KV cells."""
        import llama_cpp

        self._active.pop(seq.seq_id, None)
        if seq.position:
            llama_cpp.llama_memory_seq_rm(self._context.memory, seq.seq_id, -1, -1)
        if seq.sampler is not None:
            seq.sampler.close()
