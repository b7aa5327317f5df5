"""Usage per key name: requests and tokens, counted as the queen audits each request's outcome.

The audit records of a request carry the name of the key that made it (`key_name`, bound by
authentication from the key table, never read from a request), so the usage is taken from
them: `task.*` outcomes give prompt and completion tokens, `embedding.completed` prompt tokens.
Counts go to the Prometheus counters at once and to the key store's usage table in batches
(`flush`, every `key_usage_flush_s` and at shutdown).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any

from rbee.common import log_context
from rbee.common.audit import Audit
from rbee.common.metrics import DaemonMetrics
from rbee.queen.keys.store import KeyStore

KEY_FIELD = "key_name"
OUTCOMES = frozenset({"task.completed", "task.failed", "task.cancelled", "embedding.completed",
                      "embedding.failed"})


class KeyUsage:
    """Counts of requests and tokens per key since the last flush, and the per-key counters."""

    def __init__(self, store: KeyStore, metrics: DaemonMetrics,
                 charge: Callable[[str, int], None]) -> None:
        self._store = store
        self._charge = charge
        self._pending: collections.defaultdict[str, list[float]] = collections.defaultdict(
            lambda: [0, 0, 0, 0.0])
        self._requests = metrics.counter("key_requests_total", "Requests authenticated by each named key",
                                         ("key",))
        self._tokens = metrics.counter("key_tokens_total", "Tokens of the requests of each named key, "
                                       "by kind (prompt, completion)", ("key", "kind"))

    def request(self, name: str) -> None:
        """Count one request of key `name`."""
        self._requests.labels(name).inc()
        pending = self._pending[name]
        pending[0] += 1
        pending[3] = time.time()

    def _tokens_of(self, name: str, prompt: int, completion: int) -> None:
        pending = self._pending[name]
        pending[1] += prompt
        pending[2] += completion
        if prompt:
            self._tokens.labels(name, "prompt").inc(prompt)
        if completion:
            self._tokens.labels(name, "completion").inc(completion)
        self._charge(name, prompt + completion)

    def tap(self, audit: Audit) -> Audit:
        """An audit function that adds the bound key name to each record, counts the tokens of
        request outcomes against it, then records the event with `audit`."""

        def counted(event: str, **fields: Any) -> Any:
            name = fields.get(KEY_FIELD) or log_context.bound(KEY_FIELD)
            if name is None:
                return audit(event, **fields)
            if event in OUTCOMES:
                self._tokens_of(name, int(fields.get("prompt_tokens") or 0),
                                int(fields.get("tokens_out") or 0))
            return audit(event, **{KEY_FIELD: name, **fields})

        return counted

    def flush(self) -> None:
        """Add what was counted since the last flush to the store's usage table."""
        if not self._pending:
            return
        rows = [(name, int(p[0]), int(p[1]), int(p[2]), p[3]) for name, p in self._pending.items()]
        self._pending.clear()
        self._store.add_usage(rows)

    def report(self) -> dict[str, dict[str, Any]]:
        """Usage per key: stored plus not yet flushed."""
        self.flush()
        return {name: {"requests": requests, "prompt_tokens": prompt, "completion_tokens": completion,
                       "last_used": None if last is None else time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                            time.gmtime(last))}
                for name, (requests, prompt, completion, last) in self._store.usage().items()}

    async def flush_every(self, interval_s: float) -> None:
        """Flush forever every `interval_s` (the owner task of the usage table)."""
        while True:
            await asyncio.sleep(interval_s)
            self.flush()
