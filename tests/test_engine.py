"""The generation loop on real llama.cpp with the tiny random-weight model."""

import json
import threading

import pytest
from llama_cpp.llama_grammar import JSON_GBNF

from rbee.common.wire_requests import SamplingParams
from rbee.testing.tiny_model import build_tiny_gguf
from rbee.worker import engine
from rbee.worker.generation import Job


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    path = build_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context_length=1024)
    return engine.load_context(str(path), n_ctx=1024, n_threads=1)


def _run(context, params, stops=(), cancel=None):
    pieces: list[tuple[int, str]] = []
    prompt = engine.tokenize(context, "Once upon a time", parse_special=False)
    job = Job(prompt, params, stops, cancel or threading.Event(), lambda i, t, lp: pieces.append((i, t)))
    outcome = engine.generate(context, job)
    return outcome, pieces


def test_generation_stops_at_max_tokens_when_eos_is_ignored(context):
    outcome, pieces = _run(context, SamplingParams(max_tokens=300, ignore_eos=True))
    assert outcome == engine.Outcome(tokens_out=300, stop_reason="max_tokens")
    assert [i for i, _ in pieces] == list(range(300))
    assert "".join(text for _, text in pieces)


def test_the_same_seed_gives_the_same_text(context):
    params = SamplingParams(max_tokens=40, temperature=1.0, seed=7, ignore_eos=True)
    assert _run(context, params)[1] == _run(context, params)[1]


def test_a_set_cancel_flag_stops_generation_at_the_next_token(context):
    cancel = threading.Event()
    cancel.set()
    outcome, pieces = _run(context, SamplingParams(max_tokens=500, ignore_eos=True), cancel=cancel)
    assert outcome.stop_reason == "cancelled" and outcome.tokens_out == 0 and pieces == []


def test_the_budget_never_exceeds_the_context_window(context):
    outcome, _ = _run(context, SamplingParams(max_tokens=5000, ignore_eos=True))
    assert outcome.tokens_out <= context.n_ctx()


def test_a_stop_sequence_ends_generation_and_is_not_emitted(context):
    params = SamplingParams(max_tokens=400, temperature=1.0, seed=3, ignore_eos=True)
    _, pieces = _run(context, params)
    text = "".join(t for _, t in pieces)
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    outcome, stopped = _run(context, params, stops=(stop,))
    assert outcome.stop_reason == "stop"
    assert "".join(t for _, t in stopped) == text[: text.find(stop)]


def _run_job(context, params, **job_fields):
    pieces: list[tuple[int, str, object]] = []
    prompt = engine.tokenize(context, "Once upon a time", parse_special=False)
    job = Job(prompt, params, (), threading.Event(), lambda i, t, lp: pieces.append((i, t, lp)), **job_fields)
    return engine.generate(context, job), pieces


def test_the_simple_engine_samples_with_the_same_chain_grammar_included(context):
    params = SamplingParams(max_tokens=300, temperature=1.0, seed=4, ignore_eos=True)
    outcome, pieces = _run_job(context, params, grammar=JSON_GBNF)
    assert isinstance(json.loads("".join(t for _, t, _ in pieces)), dict)
    assert outcome.stop_reason == "eos"  # a complete grammar ends the text, ignore_eos or not


def test_the_simple_engine_reports_log_probabilities_and_honours_logit_bias(context):
    forced = engine.tokenize(context, " hello", parse_special=False)[-1]
    params = SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True, n_probs=2,
                            logit_bias={str(forced): 100})
    _, pieces = _run_job(context, params)
    assert [t for _, t, _ in pieces] == [" hello"] * 4
    assert all(len(lp.top) == 2 and lp.sampled.token == " hello" for _, _, lp in pieces)
