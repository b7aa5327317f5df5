"""The batched engine on real llama.cpp with the tiny random-weight model: sequences decoded
together in one context, joining and leaving between steps, with tokens handed out before the
next batch decodes (the CPU's order) and while it decodes (the GPU's order)."""

import asyncio
import threading
from dataclasses import dataclass, field

import pytest

from rbee.common.wire_requests import SamplingParams
from rbee.testing.tiny_model import build_tiny_gguf
from rbee.worker import batch_engine
from rbee.worker.batch_engine import BatchEngine, _Batch, _default_threads
from rbee.worker.faults import Faults
from rbee.worker.generation import Job, LoadSpec, Outcome

CHUNK = 128
"""Prompt tokens a step takes while others decode, in the engines these tests load."""

SLOTS = 4
CTX = 1024
WAIT_S = 30


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return str(build_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context_length=CTX))


def _load(model_path: str, overlap: bool, slots: int = SLOTS, ctx: int = CTX, faults: Faults | None = None):
    """An engine that hands tokens out while the next batch decodes when `overlap`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_engine, "_overlaps", lambda spec: overlap)
        spec = LoadSpec(model_path, slots, ctx, 1, prefill_chunk_tokens=CHUNK)
        return asyncio.run(BatchEngine.load(spec, faults or Faults(), lambda _: None))


@pytest.fixture(scope="module", params=[False, True], ids=["in-order", "overlapped"])
def batch(model_path, request):
    engine = _load(model_path, request.param)
    yield engine
    engine.shutdown()


@dataclass
class Run:
    """One submitted job and what it emitted."""

    future: object
    pieces: list[tuple[int, str]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def text(self) -> str:
        return "".join(text for _, text in self.pieces)

    def outcome(self) -> Outcome:
        return self.future.result(WAIT_S)


def _start(engine, slot, params, prompt="Once upon a time", stops=(), on_token=None) -> Run:
    """Submit a job; `on_token(run, index)` runs on the decode loop's thread after each token."""
    run = Run(future=None)

    def emit(index: int, text: str, logprobs=None) -> None:
        run.pieces.append((index, text))
        if on_token is not None:
            on_token(run, index)

    job = Job(engine.tokenize(prompt, False), params, stops, run.cancel, emit)
    run.future = engine.start(slot, job)
    return run


def _ended(outcome: Outcome) -> tuple[int, str]:
    """How many tokens a generation made and why it stopped (whatever its prompt reused)."""
    return outcome.tokens_out, outcome.stop_reason


def _wait_for_tokens(run: Run, count: int) -> None:
    for _ in range(WAIT_S * 100):
        if len(run.pieces) >= count:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"fewer than {count} tokens arrived")


def test_sequences_decoded_together_each_stop_at_their_own_max_tokens(batch):
    runs = [_start(batch, slot, SamplingParams(max_tokens=50 * (slot + 1), ignore_eos=True))
            for slot in range(SLOTS)]
    for slot, run in enumerate(runs):
        assert _ended(run.outcome()) == (50 * (slot + 1), "max_tokens")
        assert [i for i, _ in run.pieces] == list(range(50 * (slot + 1)))
        assert run.text


def test_each_sequence_samples_with_its_own_seed(batch):
    params = [SamplingParams(max_tokens=60, temperature=1.0, seed=seed, ignore_eos=True)
              for seed in (11, 11, 12, 13)]
    runs = [_start(batch, slot, p) for slot, p in enumerate(params)]
    texts = [(r.outcome(), r.text)[1] for r in runs]
    assert texts[0] == texts[1]
    assert len({texts[0], texts[2], texts[3]}) == 3


def test_a_greedy_sequence_is_unaffected_by_a_hot_one_beside_it(batch):
    greedy = SamplingParams(max_tokens=80, temperature=0.0, ignore_eos=True)
    alone = _start(batch, 0, greedy)
    alone.outcome()
    together = _start(batch, 0, greedy)
    hot = _start(batch, 1, SamplingParams(max_tokens=80, temperature=1.5, seed=5, ignore_eos=True))
    together.outcome()
    hot.outcome()
    assert together.text == alone.text and hot.text != alone.text


def test_a_prompt_run_again_in_its_slot_reuses_the_cells_and_generates_the_same_text(batch):
    params = SamplingParams(max_tokens=120, temperature=1.0, seed=21, ignore_eos=True)
    first = _start(batch, 2, params)
    first.outcome()
    second = _start(batch, 2, params)
    prompt_tokens = len(batch.tokenize("Once upon a time", False))
    assert second.outcome() == Outcome(120, "max_tokens", prompt_tokens_cached=prompt_tokens - 1)
    assert second.text == first.text


CONVERSATION = " ".join(["the little dog saw a big cat and ran"] * 8)
"""A prompt long enough that its cells are worth copying between slots (over 32 tokens)."""


def _fresh_text(model_path: str, prompt: str, params: SamplingParams) -> str:
    """What `prompt` generates in an engine that has cached nothing."""
    engine = _load(model_path, False)
    try:
        run = _start(engine, 0, params, prompt=prompt)
        assert run.outcome().prompt_tokens_cached == 0
        return run.text
    finally:
        engine.shutdown()


def test_a_next_turn_in_the_same_slot_decodes_only_what_was_appended(batch, model_path):
    params = SamplingParams(max_tokens=40, temperature=0.8, seed=3, ignore_eos=True)
    turn = _start(batch, 3, params, prompt=CONVERSATION)
    turn.outcome()
    follow_up = CONVERSATION + turn.text + " and then"
    before = (batch.prompt_tokens_reused, batch.prompt_tokens_decoded)
    again = _start(batch, 3, params, prompt=follow_up)
    cached = again.outcome().prompt_tokens_cached
    shared = len(batch.tokenize(CONVERSATION, False))
    assert cached >= shared
    assert batch.prompt_tokens_reused - before[0] == cached
    assert batch.prompt_tokens_decoded - before[1] == len(batch.tokenize(follow_up, False)) - cached
    assert again.text == _fresh_text(model_path, follow_up, params)


def test_a_prompt_copies_the_prefix_another_slot_holds(batch, model_path):
    params = SamplingParams(max_tokens=30, temperature=0.8, seed=4, ignore_eos=True)
    _start(batch, 0, params, prompt=CONVERSATION + " one").outcome()
    other = _start(batch, 1, params, prompt=CONVERSATION + " two")
    assert other.outcome().prompt_tokens_cached >= len(batch.tokenize(CONVERSATION, False)) - 1
    assert other.text == _fresh_text(model_path, CONVERSATION + " two", params)


def test_a_prompt_copies_the_prefix_of_a_sequence_still_running_and_spares_it(batch, model_path):
    params = SamplingParams(max_tokens=200, temperature=0.8, seed=5, ignore_eos=True)
    joiner: list[Run] = []

    def join(_: Run, index: int) -> None:
        if index == 3:
            joiner.append(_start(batch, 1, SamplingParams(max_tokens=20, seed=6, ignore_eos=True),
                                 prompt=CONVERSATION + " more"))

    runner = _start(batch, 0, params, prompt=CONVERSATION + " less", on_token=join)
    runner.outcome()
    assert joiner[0].outcome().prompt_tokens_cached >= len(batch.tokenize(CONVERSATION, False)) - 1
    assert runner.text == _fresh_text(model_path, CONVERSATION + " less", params)
    assert joiner[0].text == _fresh_text(model_path, CONVERSATION + " more",
                                         SamplingParams(max_tokens=20, seed=6, ignore_eos=True))


def test_a_request_goes_to_the_free_slot_holding_its_prefix_else_the_least_recently_used(batch):
    params = SamplingParams(max_tokens=5, ignore_eos=True)
    for slot, word in ((0, "red"), (1, "green"), (2, "blue"), (3, "black")):
        _start(batch, slot, params, prompt=f"{word} {CONVERSATION}").outcome()
    assert batch.slot_for(batch.tokenize(f"green {CONVERSATION} again", False), [0, 1, 2, 3]) == 1
    assert batch.slot_for(batch.tokenize(f"green {CONVERSATION} again", False), [0, 2, 3]) == 0
    assert batch.slot_for([], [3, 2, 1]) == 1


def test_a_long_prompt_joins_in_chunks_while_others_keep_decoding(batch):
    order: list[int] = []
    prompt = " ".join(["the little dog saw a big cat"] * 100)
    prompt_tokens = len(batch.tokenize(prompt, False))
    assert prompt_tokens > 3 * CHUNK
    joiner: list[Run] = []

    def runner_token(_: Run, index: int) -> None:
        order.append(0)
        if index == 5:
            params = SamplingParams(max_tokens=5, ignore_eos=True)
            joiner.append(_start(batch, 1, params, prompt=prompt, on_token=lambda *_: order.append(1)))

    runner = _start(batch, 0, SamplingParams(max_tokens=5000, ignore_eos=True), on_token=runner_token)
    assert runner.outcome().stop_reason == "max_tokens"
    assert joiner[0].outcome().tokens_out == 5
    between = order[6:order.index(1)]
    assert len(between) >= prompt_tokens // CHUNK - 1


def test_cancelling_one_sequence_ends_it_at_the_next_step_and_spares_the_others(batch):
    victim = _start(batch, 0, SamplingParams(max_tokens=5000, ignore_eos=True),
                    on_token=lambda run, index: index == 10 and run.cancel.set())
    survivor = _start(batch, 1, SamplingParams(max_tokens=400, ignore_eos=True))
    assert _ended(victim.outcome()) == (11, "cancelled")
    assert len(victim.pieces) == 11
    assert _ended(survivor.outcome()) == (400, "max_tokens")


def test_a_stop_sequence_ends_generation_and_is_not_emitted(batch):
    params = SamplingParams(max_tokens=300, temperature=1.0, seed=3, ignore_eos=True)
    full = _start(batch, 3, params)
    full.outcome()
    text = full.text
    stop = text[len(text) // 2: len(text) // 2 + 3]
    stopped = _start(batch, 3, params, stops=(stop,))
    assert stopped.outcome().stop_reason == "stop"
    assert stopped.text == text[: text.find(stop)]


def test_the_budget_never_exceeds_the_sequence_context(batch):
    run = _start(batch, 0, SamplingParams(max_tokens=5000, ignore_eos=True))
    outcome = run.outcome()
    prompt = len(batch.tokenize("Once upon a time", False))
    assert _ended(outcome) == (batch.context_tokens - prompt, "max_tokens")


@pytest.mark.parametrize("overlap", [False, True], ids=["in-order", "overlapped"])
def test_shutting_down_cancels_running_sequences_and_stops_the_loop(model_path, overlap):
    engine = _load(model_path, overlap, slots=2, ctx=4096, faults=Faults(slow_ms=5))
    run = _start(engine, 0, SamplingParams(max_tokens=4000, ignore_eos=True))
    _wait_for_tokens(run, 5)
    engine.shutdown()
    assert run.outcome().stop_reason == "cancelled"
    assert not engine._thread.is_alive()
    with pytest.raises(RuntimeError):
        engine.start(1, Job([1], SamplingParams(), (), threading.Event(), lambda i, t, lp: None))


def test_a_file_that_is_no_model_fails_the_load(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ValueError):
        asyncio.run(BatchEngine.load(LoadSpec(str(bad), 1, 256, 1), Faults(), lambda _: None))


def _seeded_texts(engine) -> list[tuple[Outcome, str]]:
    params = [SamplingParams(max_tokens=40 + 30 * slot, temperature=1.0, seed=100 + slot, ignore_eos=True)
              for slot in range(SLOTS)]
    runs = [_start(engine, slot, p, prompt=f"Once upon a time {slot}") for slot, p in enumerate(params)]
    return [(run.outcome(), run.text) for run in runs]


def test_parallel_sampling_and_overlap_give_the_same_tokens_as_one_thread_in_order(model_path, monkeypatch):
    results = []
    for threads, overlap in ((1, False), (SLOTS, False), (SLOTS, True)):
        monkeypatch.setattr(batch_engine, "SAMPLING_THREADS", threads)
        engine = _load(model_path, overlap)
        try:
            results.append(_seeded_texts(engine))
        finally:
            engine.shutdown()
    assert results[0] == results[1] == results[2]
    assert len({text for _, text in results[0]}) == SLOTS


def test_a_batch_writes_staged_tokens_with_their_positions_sequences_and_outputs():
    batch = _Batch(8)
    assert batch.add([5, 6, 7], 10, 2, output_last=True) == 2
    assert batch.add([9], 4, 0, output_last=False) == 3
    assert batch.write() == 4
    raw = batch.batch
    assert raw.n_tokens == 4
    assert [raw.token[i] for i in range(4)] == [5, 6, 7, 9]
    assert [raw.pos[i] for i in range(4)] == [10, 11, 12, 4]
    assert [(raw.n_seq_id[i], raw.seq_id[i][0]) for i in range(4)] == [(1, 2), (1, 2), (1, 2), (1, 0)]
    assert [raw.logits[i] for i in range(4)] == [0, 0, 1, 0]
    assert batch.add([1], 0, 3, output_last=True) == 0
    assert batch.write() == 1 and raw.token[0] == 1 and raw.seq_id[0][0] == 3 and raw.logits[0] == 1


def test_an_offloaded_model_gets_few_llama_threads_and_a_cpu_model_every_core(monkeypatch):
    monkeypatch.setattr(batch_engine.os, "cpu_count", lambda: 16)
    assert (_default_threads(True), _default_threads(False)) == (batch_engine.GPU_THREADS, 16)
    monkeypatch.setattr(batch_engine.os, "cpu_count", lambda: 2)
    assert (_default_threads(True), _default_threads(False)) == (2, 2)
