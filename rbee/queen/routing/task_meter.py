"""Timing of the tasks the dispatcher runs: queue wait, time to first token, task latency and
tokens relayed, overall and per worker (shown by `/metrics` and `/v2/status`)."""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from typing import TypeVar

from rbee.common.metrics import DaemonMetrics, Throughput
from rbee.common.wire import End, Error, Started, Token

E = TypeVar("E")


class TaskMeter:
    """Times the tasks the dispatcher runs and counts the tokens it relays, per worker."""

    def __init__(self, base: DaemonMetrics) -> None:
        self.queue_depth = base.gauge("queue_depth", "Tasks waiting for a worker with a free slot "
                                      "(placement, a spawn or a model load)")
        self.queue_wait = base.histogram("queue_wait_seconds", "From admission to a worker with a free slot")
        self.first_token = base.histogram("time_to_first_token_seconds", "From admission to the first "
                                          "token relayed to the client")
        self.duration = base.histogram("task_duration_seconds", "From admission to the end of the task, by "
                                       "outcome (completed, failed, cancelled)", ("outcome",))
        self.tokens = base.counter("tokens_generated_total", "Tokens relayed to clients")
        self.throughput = Throughput()
        self.queued = 0
        """Tasks waiting for a worker now (the queue depth)."""
        self._per_worker: collections.defaultdict[str, Throughput] = collections.defaultdict(Throughput)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Count a task as queued while it waits for a worker."""
        self.queue_depth.inc()
        self.queued += 1
        started = time.monotonic()
        try:
            yield
        finally:
            self.queued -= 1
            self.queue_depth.dec()
            self.queue_wait.observe(time.monotonic() - started)

    async def observe(self, events: AsyncIterator[E]) -> AsyncIterator[E]:
        """Pass a task's events (and whatever else it yields) through, timing its first token and
        its whole run."""
        started = time.monotonic()
        worker_id = ""
        waiting_for_first = True
        outcome = "cancelled"
        try:
            async with aclosing(events):
                async for event in events:
                    if isinstance(event, Token):
                        if waiting_for_first:
                            self.first_token.observe(time.monotonic() - started)
                            waiting_for_first = False
                        self.tokens.inc()
                        self.throughput.add()
                        self._per_worker[worker_id].add()
                    elif isinstance(event, Started):
                        worker_id = event.worker_id
                    elif isinstance(event, End):
                        outcome = "completed"
                    elif isinstance(event, Error):
                        outcome = "failed"
                    yield event
        except Exception:
            outcome = "failed"
            raise
        finally:
            self.duration.labels(outcome).observe(time.monotonic() - started)

    def tokens_per_second(self, worker_id: str) -> float:
        """Tokens per second this queen relayed from one worker over the last 10 s."""
        window = self._per_worker.get(worker_id)
        return window.rate() if window is not None else 0.0

    def forget_others(self, live: set[str]) -> None:
        """Drop the windows of workers that are gone."""
        for worker_id in set(self._per_worker) - live:
            del self._per_worker[worker_id]
