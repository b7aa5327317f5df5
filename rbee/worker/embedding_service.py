"""Embedding requests on a worker loaded for embeddings: validate, claim a slot, embed.

It offers what the runtime, the readiness check and the heartbeats read of a service (slots,
requests running, tokens generated: none), like `InferenceService` does for generation.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

from rbee.common import deadlines
from rbee.common.deadlines import Deadline
from rbee.common.embedding_wire import EmbeddingInference, EmbeddingResult
from rbee.common.errors import ApiError
from rbee.common.validation import invalid
from rbee.worker.embedding_engine import EmbeddingEngine
from rbee.worker.slots import SlotPool


class EmbeddingService:
    """Admits embedding requests onto slots and runs them on the engine."""

    def __init__(self, worker_id: str, pool: SlotPool, engine: EmbeddingEngine) -> None:
        self.worker_id = worker_id
        self.pool = pool
        self.engine = engine
        self.active_count = 0
        """Requests being embedded now."""
        self.peak_active = 0
        self.tokens_generated = 0
        """Always 0: embedding generates no tokens."""

    @staticmethod
    def stalled(now: float, timeout_s: float) -> bool:
        """False: an embedding is one decode per batch, with no token stream to stall."""
        return False

    @staticmethod
    def cancel(task_id: str) -> bool:
        """False: embeddings are not cancellable tasks (each runs to its end)."""
        return False

    def cancel_all(self) -> None:
        """Nothing to cancel: a draining worker lets running embeddings finish."""

    async def embed(self, body: Mapping[str, Any], deadline: Deadline | None = None) -> EmbeddingResult:
        """Validate a request, claim a slot for it (503 when none is free) and embed its inputs."""
        request = EmbeddingInference.parse(body)
        engine = self.engine
        if request.dimensions is not None and request.dimensions != engine.dimensions:
            raise invalid("dimensions", f"must be the model's own size, {engine.dimensions} "
                          "(rbee does not shorten embeddings)")
        slot = self.pool.acquire(uuid.uuid4().hex)
        self.active_count += 1
        self.peak_active = max(self.peak_active, self.active_count)
        try:
            tokens = await asyncio.to_thread(self._tokens, request.input)
            remaining = deadline.remaining_s() if deadline is not None else None
            async with asyncio.timeout(remaining):
                vectors = await engine.embed(tokens)
        except TimeoutError:
            raise deadlines.expired() from None
        finally:
            self.active_count -= 1
            self.pool.release(slot)
        return EmbeddingResult(embeddings=vectors, prompt_tokens=sum(len(t) for t in tokens))

    def _tokens(self, inputs: list[str] | list[list[int]]) -> list[list[int]]:
        """Each input's tokens: strings tokenized with BOS, token ids checked against the vocabulary;
        400 `INPUT_TOO_LONG` with the counts for an input longer than the embedding context."""
        engine = self.engine
        tokens = [engine.tokenize(item) if isinstance(item, str) else list(item) for item in inputs]
        if any(token >= engine.vocab_size for item in tokens for token in item):
            raise invalid("input", f"holds a token id outside the model's vocabulary of {engine.vocab_size}")
        for index, item in enumerate(tokens):
            if len(item) > engine.context_tokens:
                raise ApiError(
                    400, "INPUT_TOO_LONG",
                    f"input {index} holds {len(item)} tokens; the embedding context takes at most "
                    f"{engine.context_tokens}",
                    {"field": "input", "index": index, "input_tokens": len(item),
                     "context_tokens": engine.context_tokens},
                )
        return tokens
