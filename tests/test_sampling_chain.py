"""Each sequence's sampler chain on real llama.cpp with the tiny random-weight model: grammars
(strict and lazy), logit bias and penalties (also when greedy), log probabilities from the raw
logits, and the choices of one request sharing the prompt's cells."""

import asyncio
import json
import math
import re
import threading

import jsonschema_rs
import numpy as np
import pytest
from llama_cpp.llama_grammar import JSON_GBNF

from rbee.common.response_format import ResponseFormat
from rbee.common.wire_requests import SamplingParams
from rbee.testing.tiny_model import EOS_ID, build_tiny_gguf
from rbee.worker.batch_engine import BatchEngine
from rbee.worker.faults import Faults
from rbee.worker.generation import Job, LoadSpec
from rbee.worker.grammars import response_grammar
from rbee.worker.logprobs import log_softmax

SLOTS = 4
CTX = 1024
WAIT_S = 30
PROMPT = "Once upon a time"
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"},
                   "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}},
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    path = build_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context_length=CTX)
    engine = asyncio.run(BatchEngine.load(LoadSpec(str(path), SLOTS, CTX, 1), Faults(), lambda _: None))
    yield engine
    engine.shutdown()


class Run:
    """A job's emitted pieces and outcome."""

    def __init__(self) -> None:
        self.pieces: list[tuple[int, str, object]] = []

    def emit(self, index: int, text: str, logprobs) -> None:
        self.pieces.append((index, text, logprobs))

    @property
    def text(self) -> str:
        return "".join(text for _, text, _ in self.pieces)


def _job(batch, run: Run, **params) -> Job:
    grammar = params.pop("grammar", None)
    triggers = params.pop("grammar_triggers", ())
    follows = params.pop("follows", None)
    return Job(batch.tokenize(PROMPT, False), SamplingParams(**params), (), threading.Event(), run.emit,
               grammar=grammar, grammar_triggers=triggers, follows=follows)


def _generate(batch, **params):
    run = Run()
    outcome = batch.start(0, _job(batch, run, **params)).result(WAIT_S)
    return run, outcome


def _schema_grammar() -> str:
    fmt = ResponseFormat.parse({"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}})
    return response_grammar(fmt)


@pytest.mark.parametrize("seed", range(6))
def test_a_schema_grammar_gives_json_that_matches_and_ends_at_end_of_text(batch, seed):
    run, outcome = _generate(batch, grammar=_schema_grammar(), max_tokens=400, temperature=1.0, seed=seed)
    assert jsonschema_rs.validator_for(SCHEMA).is_valid(json.loads(run.text)), run.text
    assert outcome.stop_reason == "eos"


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_the_generic_json_grammar_gives_a_json_object(batch, temperature):
    run, outcome = _generate(batch, grammar=JSON_GBNF, max_tokens=400, temperature=temperature, seed=1)
    assert isinstance(json.loads(run.text), dict) and outcome.stop_reason == "eos"


def test_a_grammar_cut_by_max_tokens_ends_for_length(batch):
    _, outcome = _generate(batch, grammar=_schema_grammar(), max_tokens=3, temperature=0.0)
    assert (outcome.stop_reason, outcome.tokens_out) == ("max_tokens", 3)


def test_a_lazy_grammar_whose_trigger_never_appears_leaves_the_text_free(batch):
    free, _ = _generate(batch, max_tokens=30, temperature=1.0, seed=5, ignore_eos=True)
    lazy, _ = _generate(batch, grammar=JSON_GBNF, grammar_triggers=("<tool_call>",), max_tokens=30,
                        temperature=1.0, seed=5, ignore_eos=True)
    assert lazy.text == free.text and not free.text.lstrip().startswith("{")


def test_a_lazy_grammar_leaves_the_text_free_until_its_trigger_then_holds_it_to_the_end(batch):
    free, _ = _generate(batch, max_tokens=40, temperature=1.0, seed=5, ignore_eos=True)
    start = free.text.index(" there")
    lazy, outcome = _generate(batch, grammar='root ::= " there {" [a-z]+ "}"', max_tokens=80,
                              grammar_triggers=(r"[\s\S]*?( there)[\s\S]*",), temperature=1.0, seed=5)
    assert lazy.text[:start] == free.text[:start]
    assert re.fullmatch(r" there \{[a-z]+\}", lazy.text[start:]), lazy.text
    assert outcome.stop_reason == "eos"


def test_a_grammar_llama_cpp_cannot_parse_fails_the_job(batch):
    with pytest.raises(ValueError, match="grammar"):
        _generate(batch, grammar="root ::= (", max_tokens=4)


def _first_token(batch, **params) -> int:
    run, _ = _generate(batch, max_tokens=1, n_probs=0, ignore_eos=True, **params)
    return run.pieces[0][2].sampled.token


def test_greedy_decoding_honours_logit_bias_both_ways(batch):
    likeliest = _first_token(batch, temperature=0.0)
    token_id = batch.tokenize(" hello", False)[-1]
    banned = _first_token(batch, temperature=0.0, logit_bias={str(_id_of(batch, likeliest)): -100})
    forced = _first_token(batch, temperature=0.0, logit_bias={str(token_id): 100})
    assert banned != likeliest and forced == " hello"


def _id_of(batch, piece: str) -> int:
    return next(i for i in range(batch.vocab_size) if batch._vocab.piece(i) == piece.encode())


def test_greedy_decoding_honours_a_repeat_penalty(batch):
    plain, _ = _generate(batch, temperature=0.0, max_tokens=40, ignore_eos=True)
    penalized, _ = _generate(batch, temperature=0.0, max_tokens=40, ignore_eos=True, repeat_penalty=5.0,
                             frequency_penalty=2.0, presence_penalty=2.0)
    tokens = [text for _, text, _ in penalized.pieces]
    assert penalized.text != plain.text
    assert len(set(tokens)) > len({text for _, text, _ in plain.pieces})


def test_top_k_one_is_greedy(batch):
    greedy, _ = _generate(batch, temperature=0.0, max_tokens=20, ignore_eos=True)
    top_one, _ = _generate(batch, temperature=1.5, top_k=1, max_tokens=20, ignore_eos=True, seed=9)
    assert top_one.text == greedy.text


def test_log_probabilities_come_from_the_raw_logits_with_the_likeliest_first(batch):
    run, _ = _generate(batch, temperature=0.0, max_tokens=8, ignore_eos=True, n_probs=5)
    for _, _, logprobs in run.pieces:
        top = logprobs.top
        assert len(top) == 5 and [c.logprob for c in top] == sorted((c.logprob for c in top), reverse=True)
        assert logprobs.sampled == top[0]  # greedy: the likeliest token is the one sampled
        assert all(c.logprob < 0 and bytes(c.bytes).decode() == c.token for c in top)
        assert sum(math.exp(c.logprob) for c in top) <= 1.0


def test_log_probabilities_do_not_change_with_temperature_or_bias(batch):
    greedy, _ = _generate(batch, temperature=0.0, max_tokens=1, n_probs=3, ignore_eos=True)
    biased, _ = _generate(batch, temperature=1.7, max_tokens=1, n_probs=3, ignore_eos=True, seed=2,
                          logit_bias={str(EOS_ID): 50})
    assert greedy.pieces[0][2].top == biased.pieces[0][2].top


def test_no_log_probabilities_unless_asked(batch):
    run, _ = _generate(batch, max_tokens=4, ignore_eos=True)
    assert all(logprobs is None for _, _, logprobs in run.pieces)


def _choices(batch, seeds: list[int | None], **params) -> list[Run]:
    """One request's choices as the worker starts them: the first decodes the prompt, the
    others follow it (each choice with its own seed)."""
    runs = [Run() for _ in seeds]
    futures = batch.start_all([(i, _job(batch, run, follows=0 if i else None, seed=seed, **params))
                               for i, (run, seed) in enumerate(zip(runs, seeds, strict=True))])
    for future in futures:
        future.result(WAIT_S)
    return runs


def test_choices_copy_the_prompt_cells_and_continue_it_as_decoding_it_would(batch, monkeypatch):
    import llama_cpp

    copies = []
    real_copy = llama_cpp.llama_memory_seq_cp
    monkeypatch.setattr(llama_cpp, "llama_memory_seq_cp", lambda *args: (copies.append(args[1:3]),
                                                                          real_copy(*args))[1])
    single, _ = _generate(batch, temperature=0.0, max_tokens=24, ignore_eos=True)
    runs = _choices(batch, [None] * 3, temperature=0.0, max_tokens=24, ignore_eos=True)
    assert [run.text for run in runs] == [single.text] * 3
    assert copies == [(0, 1), (0, 2)]


def test_each_choice_samples_with_its_own_sampler_and_seed(batch):
    runs = _choices(batch, [4, 5, 6], temperature=1.0, max_tokens=24, ignore_eos=True)
    assert len({run.text for run in runs}) == 3
    for seed, run in zip([4, 5, 6], runs, strict=True):
        alone, _ = _generate(batch, temperature=1.0, max_tokens=24, ignore_eos=True, seed=seed)
        assert run.text == alone.text


def test_log_softmax_is_normalised_and_keeps_the_order():
    logits = np.array([1.0, 3.0, -2.0, 0.5], dtype=np.float32)
    logprobs = log_softmax(logits)
    assert math.isclose(np.exp(logprobs).sum(), 1.0)
    assert list(np.argsort(logprobs)) == list(np.argsort(logits))
