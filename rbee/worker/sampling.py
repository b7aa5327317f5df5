"""One sequence's sampler chain, in the order llama.cpp's common sampler applies it: logit bias,
penalties, then top-k, typical, top-p, min-p, temperature and the seeded draw (or the likeliest
token when the temperature is 0). A grammar goes first, so every token drawn is one it allows
(llama.cpp's common sampler resamples with the grammar first when a token breaks it; applying
it first always is that path taken every time); it also allows end of generation only once the
grammar is complete. A lazy grammar (with trigger patterns) lets text through freely until one
of the patterns appears, and constrains what follows."""

from __future__ import annotations

import random
from typing import Any

from rbee.common.validation import PENALTY_WINDOW_TOKENS
from rbee.common.wire_requests import SamplingParams
from rbee.worker.generation import Job

TYPICAL_P = 1.0
"""llama-cpp-python's default for what rbee's API does not expose (1: off)."""
GRAMMAR_ROOT = "root"
"""The rule a grammar starts from."""


class GrammarError(ValueError):
    """llama.cpp could not parse a grammar."""


def seed_of(params: SamplingParams) -> int:
    """The seed asked for, or a random one."""
    seed = params.fixed_seed
    return seed if seed is not None else random.randrange(2**31)


def build_sampler(job: Job, model: Any) -> Any:
    """The chain for `job` on `model` (a llama-cpp-python `LlamaModel`); GrammarError for a
    grammar llama.cpp refuses."""
    from llama_cpp import _internals

    sampler = _internals.LlamaSampler()
    try:
        if job.grammar is not None:
            _add_grammar(sampler, model, job.grammar, job.grammar_triggers)
        _add_sampling(sampler, job.params, model.n_vocab())
    except BaseException:
        sampler.close()
        raise
    return sampler


def _add_sampling(sampler: Any, params: SamplingParams, n_vocab: int) -> None:
    if params.logit_bias:
        sampler.add_logit_bias(n_vocab, {int(token): bias for token, bias in params.logit_bias.items()})
    if (params.repeat_penalty, params.frequency_penalty, params.presence_penalty) != (1.0, 0.0, 0.0):
        sampler.add_penalties(n_vocab, PENALTY_WINDOW_TOKENS, params.repeat_penalty,
                              params.frequency_penalty, params.presence_penalty)
    if params.temperature == 0.0:
        sampler.add_greedy()
        return
    sampler.add_top_k(params.top_k)
    sampler.add_typical(TYPICAL_P, 1)
    sampler.add_top_p(params.top_p, 1)
    sampler.add_min_p(params.min_p, 1)
    sampler.add_temp(params.temperature)
    sampler.add_dist(seed_of(params))


def _add_grammar(sampler: Any, model: Any, grammar: str, triggers: tuple[str, ...]) -> None:
    """Add the grammar sampler (lazy when `triggers` are given), checking that llama.cpp took it
    (llama-cpp-python's `add_grammar` helpers would add the null sampler of a grammar llama.cpp
    could not parse)."""
    import ctypes

    import llama_cpp

    text, root = grammar.encode("utf-8"), GRAMMAR_ROOT.encode("utf-8")
    if triggers:
        patterns = (ctypes.c_char_p * len(triggers))(*[pattern.encode("utf-8") for pattern in triggers])
        no_tokens = (llama_cpp.llama_token * 0)()
        part = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
            model.vocab, text, root, patterns, len(triggers), no_tokens, 0)
    else:
        part = llama_cpp.llama_sampler_init_grammar(model.vocab, text, root)
    if not part:
        raise GrammarError("llama.cpp could not parse the grammar")
    llama_cpp.llama_sampler_chain_add(sampler.sampler, part)
