"""The batched engine (the default): one model, one context, every active sequence advanced
together in one `llama_decode` batch per step.

One thread owns the llama context: it loads the model and then runs the decode loop; nothing
else touches the context. The event loop hands it work through a thread-safe queue. Each step
puts the next token of every decoding sequence, plus prompt tokens of sequences that joined,
into one batch, decodes it, and samples each sequence's next token with that sequence's own
sampler (its own parameters and seed), the sequences spread over a few sampling threads
(llama.cpp releases the GIL while it samples). On a GPU, where `llama_decode` returns before the
outputs are ready, the tokens just sampled go into the next batch at once and their text is
handed out while it decodes (a sequence's first token goes out before, for its time to first
token); a sequence that ends on such a token has one token decoded for nothing. Sequences join
(prompt prefill) and leave (end of generation, stop sequence, max tokens, cancellation) between
steps. A finished sequence's KV cells are kept (`prefix_cache`): a sequence joining starts
from the longest prefix of its prompt that its own cells, or another sequence's, hold (cut to
that prefix, or copied with `llama_memory_seq_cp` and cut, once no decode is in flight) and
decodes only the rest. A slot is a sequence id, so the slot count costs KV cache memory, not threads or
copies of the weights. The choices of one request (`n` > 1) decode the prompt once: the first
choice's sequence decodes it, and the others copy its cells (`llama_memory_seq_cp`) and sample
their first token from the same logits, each with its own sampler.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import functools
import logging
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from rbee.common.wire import StopReason, TokenLogprobs
from rbee.worker import engine
from rbee.worker.faults import Faults
from rbee.worker.generation import Job, LoadSpec, Outcome, Progress
from rbee.worker.logprobs import logits_at, token_logprobs
from rbee.worker.prefix_cache import PrefixIndex, Reuse, plan
from rbee.worker.sampling import build_sampler
from rbee.worker.token_rules import TokenRules

log = logging.getLogger(__name__)
BATCH_TOKENS = 512
"""Tokens one `llama_decode` call takes (and the most sequences a worker can have)."""
SHUTDOWN_JOIN_S = 2.0
"""How long shutting down waits for the decode loop to leave its current step."""
SAMPLING_THREADS = max(1, min(8, os.cpu_count() or 1))
"""Threads that sample one step's sequences (the decode loop's own included): sampling scans the
whole vocabulary once per sequence, and more than 8 threads gain little against their overhead."""
GPU_THREADS = 4
"""llama.cpp's CPU threads for a fully offloaded model (unless `threads` is given): its CPU work
is small, and idle threads would spin against the sampling threads."""


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
    """Index in the last batch of the token whose logits this sequence samples from."""
    leader: _Sequence | None = None
    """The sequence whose prompt cells this one waits to copy (another choice of its request)."""
    followers: list[_Sequence] = field(default_factory=list)
    """Sequences waiting to copy this one's prompt cells."""
    copy_due: bool = False
    """The leader's prompt is in the KV cache: copy its cells before the next decode."""
    cells: list[int] = field(default_factory=list)
    """The tokens its KV cells hold (or will, once the decode in flight is done)."""
    placed: bool = False
    """Its cells are set up: cut to a reused prefix, copied, or cleared."""
    reused: int = 0
    """Prompt tokens taken from cells already in the cache instead of decoded."""

    def __post_init__(self) -> None:
        self.pending = list(self.job.prompt_tokens)

    def follow(self, leader: _Sequence) -> None:
        """Take the prompt from `leader`'s cells instead of decoding it."""
        self.leader = leader
        self.pending = []
        leader.followers.append(self)

    def unfollow(self) -> None:
        """The leader is gone before its prompt was copied: decode the prompt after all."""
        self.leader = None
        self.copy_due = False
        self.logits_at = -1
        self.pending = list(self.job.prompt_tokens)

    @property
    def decoding(self) -> bool:
        """True once the whole prompt is in the KV cache."""
        return self.position >= len(self.job.prompt_tokens)


class _Batch:
    """A `llama_batch` over arrays this object owns (one sequence id per token), staged in lists
    and written with one slice assignment per array instead of ctypes calls per token."""

    def __init__(self, size: int) -> None:
        import llama_cpp

        self._tokens = (llama_cpp.llama_token * size)()
        self._positions = (llama_cpp.llama_pos * size)()
        self._seq_ids = (llama_cpp.llama_seq_id * size)()
        self._outputs = (ctypes.c_int8 * size)()
        self._n_seq_id = (ctypes.c_int32 * size)(*[1] * size)
        step = ctypes.sizeof(llama_cpp.llama_seq_id)
        base = ctypes.addressof(self._seq_ids)
        self._seq_id_rows = (ctypes.c_void_p * size)(*[base + i * step for i in range(size)])
        self.batch = llama_cpp.llama_batch(
            n_tokens=0,
            token=ctypes.cast(self._tokens, ctypes.POINTER(llama_cpp.llama_token)),
            embd=None,
            pos=ctypes.cast(self._positions, ctypes.POINTER(llama_cpp.llama_pos)),
            n_seq_id=ctypes.cast(self._n_seq_id, ctypes.POINTER(ctypes.c_int32)),
            seq_id=ctypes.cast(self._seq_id_rows, ctypes.POINTER(ctypes.POINTER(llama_cpp.llama_seq_id))),
            logits=ctypes.cast(self._outputs, ctypes.POINTER(ctypes.c_int8)),
        )
        self._staged: tuple[list[int], list[int], list[int], list[int]] = ([], [], [], [])

    def add(self, tokens: list[int], position: int, seq_id: int, output_last: bool) -> int:
        """Stage one sequence's tokens from `position`; the batch index of the last one."""
        staged_tokens, positions, seq_ids, outputs = self._staged
        staged_tokens += tokens
        positions += range(position, position + len(tokens))
        seq_ids += [seq_id] * len(tokens)
        outputs += [0] * len(tokens)
        if output_last:
            outputs[-1] = 1
        return len(staged_tokens) - 1

    def write(self) -> int:
        """Write the staged tokens into the batch and start staging anew; how many there were."""
        count = len(self._staged[0])
        arrays = (self._tokens, self._positions, self._seq_ids, self._outputs)
        for array, values in zip(arrays, self._staged, strict=True):
            array[:count] = values
            values.clear()
        self.batch.n_tokens = count
        return count


class _CachedVocab:
    """Each token's text and whether it ends generation, asked of llama.cpp once per token
    (used by the decode loop's thread; `piece` also by the sampling threads)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._texts: dict[tuple[int, ...], bytes] = {}
        self._pieces: dict[int, bytes] = {}
        self.is_end = functools.cache(functools.partial(engine.is_end_of_generation, model.vocab))

    def detokenize(self, tokens: list[int]) -> bytes:
        """The model's `detokenize`, remembered."""
        key = tuple(tokens)
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = self._model.detokenize(tokens)
        return text

    def piece(self, token: int) -> bytes:
        """One token's bytes as it reads in the output, remembered (any sampling thread may ask)."""
        text = self._pieces.get(token)
        if text is None:
            text = self._pieces[token] = engine.token_piece(self._model.vocab, token)
        return text


def _default_threads(offloaded: bool) -> int:
    """llama.cpp threads when none are given: every core, or `GPU_THREADS` for an offloaded model."""
    cores = max(1, os.cpu_count() or 1)
    return min(GPU_THREADS, cores) if offloaded else cores


def _overlaps(spec: LoadSpec) -> bool:
    """Whether a step hands out its tokens while the next batch decodes: only on a GPU, where
    `llama_decode` returns before the outputs are ready (on the CPU it would only hold every
    token back by a step)."""
    return spec.on_gpu


def _load(spec: LoadSpec) -> tuple[Any, Any]:
    """The model and one context with a KV cache of `ctx_size` tokens for each of `slots`
    sequences (kept apart: sequences attend only to their own cells)."""
    import llama_cpp
    from llama_cpp import _internals

    from rbee.worker import gpu_params

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    if spec.slots > min(llama_cpp.llama_max_parallel_sequences(), BATCH_TOKENS):
        raise ValueError(f"llama.cpp runs at most {llama_cpp.llama_max_parallel_sequences()} sequences")
    llama_cpp.llama_backend_init()
    built = gpu_params.of(spec).model_params()  # holds the tensor_split array while loading
    model_params = built.params
    if spec.on_progress is not None:
        report = spec.on_progress
        progress = llama_cpp.llama_progress_callback(lambda share, _: report(share) or True)
        model_params.progress_callback = progress  # the local keeps the C callback alive while loading
    model = _internals.LlamaModel(path_model=spec.model_path, params=model_params, verbose=False)
    offloaded = spec.on_gpu and model_params.n_gpu_layers > llama_cpp.llama_model_n_layer(model.model)
    threads = spec.threads or _default_threads(offloaded)
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
        self._overlap = _overlaps(spec)
        self._queue: queue.SimpleQueue[list[tuple[int, Job, Future[Outcome]]] | None] = queue.SimpleQueue()
        self._active: dict[int, _Sequence] = {}
        self._stale: list[_Sequence] = []
        """Sequences gone whose cells and sampler are freed once no decode is in flight."""
        self._copies_due: list[_Sequence] = []
        """Sequences whose leader's prompt the last batch completed: their cells to copy."""
        self._joining: list[_Sequence] = []
        """Sequences that joined (or stopped following) and whose cells are not placed yet."""
        self._prefixes = PrefixIndex()
        self.prompt_tokens_reused = 0
        """Prompt tokens taken from cached cells since start (written by the decode loop only)."""
        self.prompt_tokens_decoded = 0
        """Prompt tokens decoded since start (written by the decode loop only)."""
        self._in_flight = False
        self._thread = threading.Thread(target=self._own, name="decode-loop", daemon=True)
        self._pool = ThreadPoolExecutor(max(1, SAMPLING_THREADS - 1), thread_name_prefix="sampling")
        self._loaded: Future[None] = Future()
        self._closed = False
        self._model: Any = None
        self._context: Any = None
        self._vocab: _CachedVocab | None = None
        self._batch = _Batch(BATCH_TOKENS)
        self.context_tokens = 0
        self.vocab_size = 0
        self.chat_template: str | None = None

    @classmethod
    async def load(cls, spec: LoadSpec, faults: Faults, progress: Progress) -> BatchEngine:
        """Start the decode loop's thread, which loads the model; return once it is loaded."""
        batch_engine = cls(spec, faults)
        batch_engine._thread.start()
        await asyncio.wrap_future(batch_engine._loaded)
        progress(1.0)
        return batch_engine

    def tokenize(self, text: str, parse_special: bool, add_bos: bool = True) -> list[int]:
        """Prompt tokens, with BOS unless told (the vocabulary is read-only, so any thread may
        tokenize)."""
        return self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=parse_special)

    def special_texts(self) -> tuple[str, str]:
        """The text of the BOS and EOS tokens."""
        return engine.special_texts(self._model)

    def slot_for(self, prompt_tokens: list[int], free: list[int]) -> int:
        """The free slot to run `prompt_tokens` in: the one whose cells hold its longest prefix,
        else the least recently used."""
        return self._prefixes.choose(prompt_tokens, free)

    def start(self, slot: int, job: Job) -> Future[Outcome]:
        """Queue `job` to join the batch as sequence `slot` at the next step."""
        return self.start_all([(slot, job)])[0]

    def start_all(self, starts: list[tuple[int, Job]]) -> list[Future[Outcome]]:
        """Queue jobs to join the batch together at the next step (one request's choices: those
        that follow the first one find it there, its prompt not yet decoded)."""
        if self._closed:
            raise RuntimeError("the engine is shut down")
        item = [(slot, job, Future[Outcome]()) for slot, job in starts]
        self._queue.put(item)
        return [done for _, _, done in item]

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
            self._vocab = _CachedVocab(self._model)
            self.context_tokens = llama_cpp.llama_n_ctx_seq(self._context.ctx)
            self.vocab_size = self._model.n_vocab()
            self.chat_template = engine.chat_template_of(self._model.metadata())
        except BaseException as exc:
            self._free()
            self._loaded.set_exception(exc)
            return
        self._loaded.set_result(None)
        try:
            while self._admit(block=not self._active and not self._in_flight):
                for seq in [s for s in self._active.values() if s.job.cancel.is_set()]:
                    self._finish(seq, StopReason.CANCELLED)
                self._guarded_step()
            for seq in list(self._active.values()):
                self._finish(seq, StopReason.CANCELLED)
        finally:
            self._free()

    def _free(self) -> None:
        if self._context is not None:
            self._quiesce()
        self._pool.shutdown()
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
                for start in item:
                    self._join(*start)
                item = self._queue.get_nowait()
        except queue.Empty:
            return True

    def _join(self, slot: int, job: Job, done: Future[Outcome]) -> None:
        if not done.set_running_or_notify_cancel():
            return
        self._faults.on_generation_start()
        vocab = self._vocab
        assert vocab is not None
        rules = TokenRules(job, self.context_tokens, vocab.is_end, vocab.detokenize, self._faults.on_token)
        seq = _Sequence(slot, job, done, rules)
        if job.cancel.is_set():
            self._finish(seq, StopReason.CANCELLED)
        elif rules.budget <= 0:
            self._finish(seq, StopReason.MAX_TOKENS)
        else:
            try:
                seq.sampler = build_sampler(job, self._model)
            except Exception as exc:
                done.set_exception(exc)
                return
            leader = self._active.get(job.follows) if job.follows is not None else None
            if leader is not None and not leader.placed and leader.job.prompt_tokens == job.prompt_tokens:
                seq.follow(leader)
            else:
                self._joining.append(seq)
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
        """Sample the last batch's outputs, then hand the tokens out and decode the next batch:
        on a GPU in the other order, so that the two overlap, except for each sequence's first
        token, handed out before the launch (its time to first token)."""
        self._quiesce()
        self._place_joining()
        self._copy_prompts()
        sampled = self._sample()
        if self._overlap:
            firsts = [pair for pair in sampled if not pair[0].rules.produced]
            later = [pair for pair in sampled if pair[0].rules.produced]
            self._settle(firsts)
            self._launch(sampled)
            self._settle(later)
        else:
            self._settle(sampled)
            self._launch(sampled)

    def _quiesce(self) -> None:
        """Wait for the decode in flight, then free the cells and samplers of sequences gone."""
        import llama_cpp

        if self._in_flight:
            llama_cpp.llama_synchronize(self._context.ctx)
            self._in_flight = False
        for seq in self._stale:
            if seq.placed and not seq.cells:
                llama_cpp.llama_memory_seq_rm(self._context.memory, seq.seq_id, -1, -1)
            if seq.sampler is not None:
                seq.sampler.close()
        self._stale.clear()

    def _place_joining(self) -> None:
        """Set up the cells of each sequence that joined: from the longest cached prefix of its
        prompt (`prefix_cache.plan`), the rest left to decode."""
        for seq in self._joining:
            if self._active.get(seq.seq_id) is seq and seq.leader is None and not seq.placed:
                self._place(seq)
        self._joining.clear()

    def _place(self, seq: _Sequence) -> None:
        import llama_cpp

        prompt = seq.job.prompt_tokens
        own = self._prefixes.take(seq.seq_id)
        others = [*self._prefixes.idle(),
                  *((s.seq_id, s.cells) for s in self._active.values() if s is not seq and s.placed)]
        reuse = self._usable(plan(seq.seq_id, prompt, own, others, self._spec.prefix_copy_min_tokens))
        memory = self._context.memory
        if reuse.source != seq.seq_id:
            llama_cpp.llama_memory_seq_rm(memory, seq.seq_id, -1, -1)
            llama_cpp.llama_memory_seq_cp(memory, reuse.source, seq.seq_id, -1, -1)
        if not llama_cpp.llama_memory_seq_rm(memory, seq.seq_id, reuse.length, -1):
            llama_cpp.llama_memory_seq_rm(memory, seq.seq_id, -1, -1)
            reuse = Reuse(seq.seq_id, 0)
        seq.placed = True
        seq.reused = seq.position = reuse.length
        seq.cells = prompt[:reuse.length]
        seq.pending = prompt[reuse.length:]
        self.prompt_tokens_reused += reuse.length
        self.prompt_tokens_decoded += len(seq.pending)

    def _usable(self, reuse: Reuse) -> Reuse:
        """`reuse`, or none when the source's cells no longer hold the positions the prefix needs
        (a sliding-window cache keeps only the last window's cells)."""
        import llama_cpp

        if not reuse.length:
            return reuse
        oldest = llama_cpp.llama_memory_seq_pos_min(self._context.memory, reuse.source)
        window = max(1, llama_cpp.llama_model_n_swa(self._model.model))
        if oldest < 0 or oldest > max(0, reuse.length - window):
            return Reuse(reuse.source, 0)
        return reuse

    def _copy_prompts(self) -> None:
        """Give each sequence whose leader's prompt is now in the KV cache a copy of those cells
        (llama.cpp copies them before the next decode)."""
        import llama_cpp

        for seq in self._copies_due:
            leader = seq.leader
            if seq.copy_due and leader is not None and self._active.get(seq.seq_id) is seq:
                llama_cpp.llama_memory_seq_cp(self._context.memory, leader.seq_id, seq.seq_id, -1, -1)
                self._prefixes.take(seq.seq_id)
                seq.placed = True
                seq.cells = list(leader.cells)
                seq.reused = seq.position = leader.position
                self.prompt_tokens_reused += seq.reused
                seq.leader = None
                seq.copy_due = False
                leader.followers.remove(seq)
        self._copies_due.clear()

    def _sample(self) -> list[tuple[_Sequence, int, TokenLogprobs | None]]:
        """The next token of every sequence whose input the last batch completed, and its log
        probabilities for a sequence that asks; the sequences are spread over `SAMPLING_THREADS`
        threads, each sampler used by one thread."""
        import llama_cpp

        ready = [s for s in self._active.values() if s.logits_at >= 0]
        if not ready:
            return []
        ctx = self._context.ctx
        # one read on this thread first: llama.cpp puts the batch's outputs in order on the first
        llama_cpp.llama_get_logits_ith(ctx, ready[0].logits_at)
        sample = llama_cpp.llama_sampler_sample
        n_vocab = self.vocab_size
        vocab = self._vocab
        assert vocab is not None

        def sample_one(seq: _Sequence) -> tuple[int, TokenLogprobs | None]:
            token = sample(seq.sampler.sampler, ctx, seq.logits_at)
            n_probs = seq.job.params.n_probs
            if n_probs is None:
                return token, None
            return token, token_logprobs(logits_at(ctx, seq.logits_at, n_vocab), token, n_probs, vocab.piece)

        def sample_all(chunk: list[_Sequence]) -> list[tuple[int, TokenLogprobs | None]]:
            return [sample_one(seq) for seq in chunk]

        parts = min(SAMPLING_THREADS, len(ready))
        futures = [self._pool.submit(sample_all, ready[i::parts]) for i in range(1, parts)]
        try:
            first = sample_all(ready[::parts])
        finally:
            wait(futures)
        tokens: list[tuple[int, TokenLogprobs | None]] = [(0, None)] * len(ready)
        tokens[::parts] = first
        for i, part in enumerate(futures, start=1):
            tokens[i::parts] = part.result()
        return [(seq, token, logprobs) for seq, (token, logprobs) in zip(ready, tokens, strict=True)]

    def _launch(self, sampled: list[tuple[_Sequence, int, TokenLogprobs | None]]) -> None:
        """Start decoding the next batch: the sampled token of every sequence still going, then
        prompt tokens of joining ones (on a GPU the call returns before the outputs are ready)."""
        import llama_cpp

        for seq, token, _ in sampled:
            if self._active.get(seq.seq_id) is seq:
                seq.pending.append(token)
        sequences = list(self._active.values())
        decoding = [s for s in sequences if s.decoding]
        room = BATCH_TOKENS - len(decoding)
        if decoding:
            room = min(room, self._spec.prefill_chunk_tokens)
        for seq in decoding:
            self._put(seq, 1)
        for seq in sequences:
            if not seq.decoding and seq.leader is None and seq.placed:
                take = min(room, len(seq.pending))
                room -= take
                self._put(seq, take)
        if self._batch.write():
            code = llama_cpp.llama_decode(self._context.ctx, self._batch.batch)
            if code != 0:
                raise RuntimeError(f"llama_decode returned {code}")
            self._in_flight = True

    def _put(self, seq: _Sequence, take: int) -> None:
        """Stage `take` of the sequence's pending tokens; the last one asks for logits when it
        completes the sequence's input."""
        tokens = seq.pending[:take]
        del seq.pending[:take]
        seq.cells += tokens
        completes = bool(take) and not seq.pending
        last = self._batch.add(tokens, seq.position, seq.seq_id, completes)
        seq.position += take
        seq.logits_at = last if completes else -1
        if completes and seq.followers:
            for follower in seq.followers:
                if follower.leader is seq:
                    follower.logits_at = last
                    follower.copy_due = True
                    self._copies_due.append(follower)

    def _settle(self, sampled: list[tuple[_Sequence, int, TokenLogprobs | None]]) -> None:
        """Hand out each sampled token, or end its sequence on it."""
        for seq, token, logprobs in sampled:
            stop_reason = seq.rules.accept(token, logprobs)
            if stop_reason is not None:
                self._finish(seq, stop_reason)

    def _finish(self, seq: _Sequence, stop_reason: StopReason) -> None:
        """End a sequence: release held-back text (unless cancelled), settle, free it later."""
        outcome = dataclasses.replace(seq.rules.finish(stop_reason), prompt_tokens_cached=seq.reused)
        self._drop(seq, kept=True)
        seq.done.set_result(outcome)

    def _drop(self, seq: _Sequence, kept: bool = False) -> None:
        """Forget a sequence; its cells are `kept` for a later prompt sharing their prefix, or
        cleared, and its sampler freed, at the next quiet moment."""
        self._active.pop(seq.seq_id, None)
        if seq.placed:
            if not kept:
                seq.cells = []
            self._prefixes.keep(seq.seq_id, seq.cells)
        self._stale.append(seq)
        for follower in seq.followers:
            if follower.leader is seq:
                follower.unfollow()
                self._joining.append(follower)
        seq.followers.clear()
