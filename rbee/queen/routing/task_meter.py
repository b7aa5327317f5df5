"""Timing of the tasks the dispatcher runs: queue wait, time to first token, task latency and
tokens relayed, overall and per worker (shown by `/metrics` and `/v2/status`)."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rbee.common.metrics import DaemonMetrics, Throughput
from rbee.common.native_stream import TokenRun
from rbee.common.wire import End, Error, Started


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

    def start(self) -> TaskTiming:
        """Begin timing one task, from now."""
        return TaskTiming(self)

    def tokens_per_second(self, worker_id: str) -> float:
        """Tokens per second this queen relayed from one worker over the last 10 s."""
        window = self._per_worker.get(worker_id)
        return window.rate() if window is not None else 0.0

    def worker_window(self, worker_id: str) -> Throughput:
        """The tokens-per-second window of one worker."""
        return self._per_worker[worker_id]

    def forget_others(self, live: set[str]) -> None:
        """Drop the windows of workers that are gone."""
        for worker_id in set(self._per_worker) - live:
            del self._per_worker[worker_id]


class TaskTiming:
    """One task's timing: its events pass through `saw` as they are relayed, `finish` once it
    ended (outcome `cancelled` unless an end or error event, or `failed`, said otherwise)."""

    __slots__ = ("_meter", "_started", "_worker", "_waiting_for_first", "outcome")

    def __init__(self, meter: TaskMeter) -> None:
        self._meter = meter
        self._started = time.monotonic()
        self._worker: Throughput | None = None
        self._waiting_for_first = True
        self.outcome = "cancelled"

    def saw(self, item: object) -> None:
        """Count a relayed item: a token run's tokens (the first one's time), the worker of a
        started event, the outcome of an end or error event."""
        meter = self._meter
        if isinstance(item, TokenRun):
            if self._waiting_for_first:
                meter.first_token.observe(time.monotonic() - self._started)
                self._waiting_for_first = False
            meter.tokens.inc(item.count)
            meter.throughput.add(item.count)
            if self._worker is None:
                self._worker = meter.worker_window("")
            self._worker.add(item.count)
        elif isinstance(item, Started):
            self._worker = meter.worker_window(item.worker_id)
        elif isinstance(item, End):
            self.outcome = "completed"
        elif isinstance(item, Error):
            self.outcome = "failed"

    def finish(self) -> None:
        """Record the task's duration under its outcome."""
        self._meter.duration.labels(self.outcome).observe(time.monotonic() - self._started)
