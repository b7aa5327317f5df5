"""The per-token rules both engines apply to a generation: the max-token budget, end of
generation, stop sequences (text that might begin one is held back) and the final flush of
what is held back."""

from __future__ import annotations

import codecs
from collections.abc import Callable

from rbee.common.wire import StopReason, TokenLogprobs
from rbee.worker.generation import Job, Outcome
from rbee.worker.stop_matcher import StopMatcher


class TokenRules:
    """One generation's tokens, used only by the thread that generates it: each sampled token
    is either the end of generation or detokenized, checked for stop sequences and emitted."""

    def __init__(
        self,
        job: Job,
        context_tokens: int,
        is_end_of_generation: Callable[[int], bool],
        detokenize: Callable[[list[int]], bytes],
        on_token: Callable[[int], None] | None = None,
    ) -> None:
        self._job = job
        self._is_end = is_end_of_generation
        self._detokenize = detokenize
        self._on_token = on_token
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._matcher = StopMatcher(job.stops)
        self._ends_at_eos = not job.params.ignore_eos or job.grammar is not None
        """A grammar allows end of generation only once it is complete: it ends there even
        when `ignore_eos` asks to go on."""
        self.budget = min(job.params.max_tokens, context_tokens - len(job.prompt_tokens))
        """Tokens this generation may produce: `max_tokens`, or fewer when the context is fuller."""
        self.produced = 0

    def accept(self, token: int, logprobs: TokenLogprobs | None = None) -> StopReason | None:
        """Hand out a sampled token's text and log probabilities (after calling `on_token`); the
        stop reason when the generation ends with this token, None while it goes on."""
        if self._ends_at_eos and self._is_end(token):
            return StopReason.EOS
        if self._on_token is not None:
            self._on_token(self.produced)
        text = self._decoder.decode(self._detokenize([token]))
        self._job.emit(self.produced, self._matcher.feed(text), logprobs)
        self.produced += 1
        if self._matcher.stopped:
            return StopReason.STOP
        if self.produced >= self.budget:
            return StopReason.MAX_TOKENS
        return None

    def finish(self, stop_reason: StopReason) -> Outcome:
        """End the generation: emit the text still held back (unless it was cancelled)."""
        if stop_reason != StopReason.CANCELLED:
            tail = self._matcher.feed(self._decoder.decode(b"", final=True)) + self._matcher.flush()
            if tail:
                self._job.emit(self.produced, tail, None)
        return Outcome(tokens_out=self.produced, stop_reason=stop_reason)
