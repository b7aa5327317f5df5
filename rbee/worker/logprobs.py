"""Log probabilities of a generated token from the logits its step produced: the log-softmax
of the model's raw logits over the whole vocabulary (before logit bias, penalties, temperature
or a grammar change them), as OpenAI reports them. Computed only for sequences that ask."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rbee.common.wire import Candidate, TokenLogprobs


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """The log probabilities of a vector of logits (computed in float64)."""
    shifted = logits.astype(np.float64) - float(np.max(logits))
    return shifted - np.log(np.exp(shifted).sum())


Piece = Callable[[int], bytes]
"""A token's bytes."""


def token_logprobs(logits: np.ndarray, token: int, top_n: int, piece: Piece) -> TokenLogprobs:
    """The sampled `token`'s log probability and the `top_n` likeliest tokens, likeliest first."""
    logprobs = log_softmax(logits)

    def candidate(token_id: int) -> Candidate:
        raw = piece(token_id)
        return Candidate(raw.decode("utf-8", errors="replace"), float(logprobs[token_id]), tuple(raw))

    top: tuple[Candidate, ...] = ()
    if top_n:
        likeliest = np.argpartition(-logprobs, top_n - 1)[:top_n]
        top = tuple(candidate(int(i)) for i in likeliest[np.argsort(-logprobs[likeliest], kind="stable")])
    return TokenLogprobs(candidate(token), top)


def logits_at(ctx: Any, index: int, n_vocab: int) -> np.ndarray:
    """The logits llama.cpp holds for output `index` of the last batch (a view, not a copy)."""
    import llama_cpp

    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(n_vocab,))
