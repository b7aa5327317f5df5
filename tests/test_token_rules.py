"""The per-token rules both engines share, on a fake vocabulary: token n is the bytes VOCAB[n]."""

import threading

from rbee.common.wire import StopReason
from rbee.common.wire_requests import SamplingParams
from rbee.worker.generation import Job
from rbee.worker.token_rules import TokenRules

EOG = 0
E_ACUTE = "é".encode()
VOCAB = {EOG: b"</s>", 1: b"Once", 2: b" upon", 3: b" a", 4: b" time", 5: E_ACUTE[:1], 6: E_ACUTE[1:]}
PROMPT = [1, 2]


def _rules(max_tokens=10, stops=(), ignore_eos=False, context_tokens=100, on_token=None):
    pieces: list[tuple[int, str]] = []
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=ignore_eos)
    job = Job(PROMPT, params, stops, threading.Event(), lambda i, text, logprobs: pieces.append((i, text)))
    rules = TokenRules(job, context_tokens, lambda token: token == EOG,
                       lambda tokens: b"".join(VOCAB[t] for t in tokens), on_token)
    return rules, pieces


def _run(rules: TokenRules, tokens: list[int]) -> StopReason | None:
    for token in tokens:
        if (ended := rules.accept(token)) is not None:
            return ended
    return None


def _text(pieces: list[tuple[int, str]]) -> str:
    return "".join(text for _, text in pieces)


def test_generation_ends_once_the_budget_is_spent():
    rules, pieces = _rules(max_tokens=2)
    assert _run(rules, [1, 2, 3]) is StopReason.MAX_TOKENS
    assert rules.finish(StopReason.MAX_TOKENS).tokens_out == 2 and _text(pieces) == "Once upon"


def test_the_budget_shrinks_to_the_context_left_after_the_prompt():
    rules, _ = _rules(max_tokens=50, context_tokens=len(PROMPT) + 3)
    assert rules.budget == 3


def test_an_end_of_generation_token_ends_it_without_text_or_count():
    rules, pieces = _rules()
    assert _run(rules, [1, EOG]) is StopReason.EOS
    assert rules.finish(StopReason.EOS).tokens_out == 1 and _text(pieces) == "Once"


def test_ignore_eos_emits_the_end_of_generation_token_like_any_other():
    rules, pieces = _rules(max_tokens=2, ignore_eos=True)
    assert _run(rules, [EOG, 1]) is StopReason.MAX_TOKENS
    assert _text(pieces) == "</s>Once"


def test_a_stop_sequence_ends_generation_and_is_never_emitted():
    rules, pieces = _rules(stops=(" a t",))
    assert _run(rules, [1, 2, 3, 4]) is StopReason.STOP
    rules.finish(StopReason.STOP)
    assert _text(pieces) == "Once upon"


def test_text_held_back_for_a_possible_stop_is_flushed_at_the_end():
    rules, pieces = _rules(max_tokens=3, stops=(" a t",))
    _run(rules, [1, 2, 3])
    assert _text(pieces) == "Once upon"
    rules.finish(StopReason.MAX_TOKENS)
    assert pieces[-1] == (3, " a")


def test_a_cancelled_generation_drops_what_it_held_back():
    rules, pieces = _rules(stops=(" a t",))
    _run(rules, [1, 3])
    outcome = rules.finish(StopReason.CANCELLED)
    assert outcome.stop_reason is StopReason.CANCELLED and _text(pieces) == "Once"


def test_a_character_split_across_tokens_is_emitted_whole():
    rules, pieces = _rules()
    _run(rules, [5, 6])
    assert pieces == [(0, ""), (1, "é")]


def test_on_token_runs_before_each_token_but_not_for_the_flushed_tail():
    seen: list[int] = []
    rules, _ = _rules(max_tokens=2, stops=(" a t",), on_token=seen.append)
    _run(rules, [1, 3])
    rules.finish(StopReason.MAX_TOKENS)
    assert seen == [0, 1]
