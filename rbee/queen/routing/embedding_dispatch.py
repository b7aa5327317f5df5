"""Sending an embedding request to an embedding worker of its model and returning its vectors.

The worker is placed like a generation task's (`Placement.worker_for` with `embedding`): reused
when one serves the model, spawned through a hive when none does. A worker lost before it
answered (connection refused or reset) is replaced and the request sent again, up to
`MAX_ATTEMPTS` times; an error the worker answers (a 400 for an input too long) goes to the
client as it is. Each request is audited like a task: `embedding.submitted` with the SHA-256 of
its inputs (never their text), then `embedding.completed` or `embedding.failed`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp

from rbee.common import deadlines, wire
from rbee.common.audit import Audit, no_audit, prompt_digest
from rbee.common.deadlines import Deadline
from rbee.common.embedding_wire import EmbeddingResult
from rbee.common.errors import CORRELATION_HEADER, ApiError
from rbee.common.http import Headers, post_json
from rbee.common.model_refs import public_ref
from rbee.queen.routing.dispatch import MAX_ATTEMPTS, RETRY_PAUSE_S, wait_drained
from rbee.queen.routing.placement import Placement
from rbee.queen.routing.tenant import ANONYMOUS, Tenant

log = logging.getLogger(__name__)


class EmbeddingDispatcher:
    """Runs embedding requests on the embedding workers of their models."""

    def __init__(
        self, placement: Placement, session: aiohttp.ClientSession, auth: Headers, audit: Audit = no_audit
    ) -> None:
        self._placement = placement
        self._session = session
        self._auth = auth
        self._audit = audit
        self._draining = False
        self.running = 0
        """Embedding requests in flight."""

    async def drain(self, budget_s: float) -> None:
        """Refuse new requests and wait up to `budget_s` for running ones to finish."""
        self._draining = True
        await wait_drained(lambda: self.running, budget_s, "embedding request(s)")

    async def embed(
        self, model: str, body: dict[str, Any], backend: str, deadline: Deadline, correlation_id: str,
        tenant: Tenant = ANONYMOUS,
    ) -> EmbeddingResult:
        """The worker's vectors for `body` (the worker's `/v1/embeddings` body), queued for `tenant`
        while its model's embedding workers are busy."""
        if self._draining:
            raise ApiError(503, "DRAINING", "the queen is shutting down", headers={"Retry-After": "1"})
        inputs = body.get("input")
        self._audit("embedding.submitted", model=public_ref(model), correlation_id=correlation_id,
                    inputs=len(inputs) if isinstance(inputs, list) else 1,
                    input_sha256=prompt_digest(json.dumps(inputs, sort_keys=True)))
        outcome: dict[str, Any] = {"event": "embedding.failed", "code": "CANCELLED"}
        self.running += 1
        try:
            result = await self._attempts(model, body, backend, deadline, correlation_id, tenant)
            outcome = {"event": "embedding.completed", "prompt_tokens": result.prompt_tokens}
            return result
        except ApiError as err:
            outcome = {"event": "embedding.failed", "code": err.code}
            raise
        finally:
            self.running -= 1
            self._audit(outcome.pop("event"), model=public_ref(model), correlation_id=correlation_id,
                        **outcome)

    async def _attempts(
        self, model: str, body: dict[str, Any], backend: str, deadline: Deadline, correlation_id: str,
        tenant: Tenant,
    ) -> EmbeddingResult:
        headers = {CORRELATION_HEADER: correlation_id, deadlines.HEADER: deadline.header, **self._auth()}
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                async with asyncio.timeout(deadline.remaining_s()):
                    placed = self._placement.worker_for(model, backend, embedding=True, tenant=tenant)
                    async with placed as worker:
                        answer = await post_json(self._session, f"{worker.url}/v1/embeddings", body,
                                                 "worker", headers)
                return EmbeddingResult.model_validate(answer)
            except TimeoutError:
                raise deadlines.expired() from None
            except aiohttp.ClientError as exc:
                log.warning("embedding request lost its worker (attempt %d): %s", attempt, exc)
            await asyncio.sleep(RETRY_PAUSE_S * attempt)
        raise wire.worker_crashed().to_api_error(503, {"attempts": MAX_ATTEMPTS})
