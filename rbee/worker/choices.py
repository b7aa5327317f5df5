"""What the worker checks and derives per request before it claims slots: the choices (`n`)
its slots can hold, the `logit_bias` tokens its vocabulary has, each choice's own seed."""

from __future__ import annotations

from rbee.common.errors import ApiError
from rbee.common.validation import MAX_SEED, invalid
from rbee.common.wire_requests import SamplingParams


def check_choices(n: int, slots: int) -> None:
    """`n` choices need `n` slots at once: 400 when the worker has fewer in all."""
    if n > slots:
        raise ApiError(400, "TOO_MANY_CHOICES",
                       f"'n' asks for {n} choices but this worker has {slots} slots (one per choice)",
                       {"field": "n", "n": n, "slots": slots})


def check_logit_bias(logit_bias: dict[str, float], vocab_size: int) -> None:
    """Every token `logit_bias` names must be in the model's vocabulary."""
    if any(int(token) >= vocab_size for token in logit_bias):
        raise invalid("logit_bias", f"must name token ids below the model's vocabulary size ({vocab_size})")


def choice_params(params: SamplingParams, choice: int) -> SamplingParams:
    """Choice `choice`'s sampling settings: a given seed plus its index (so that choices
    differ, yet a seeded request repeats), else the same random-seed request."""
    seed = params.fixed_seed
    if not choice or seed is None:
        return params
    return params.model_copy(update={"seed": (seed + choice) % (MAX_SEED + 1)})
