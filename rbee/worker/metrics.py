"""The worker's metrics (`rbee_worker_*`): its identity (id, model, backend, GPU), slots, state and
token totals read from the runtime at scrape time; time to first token, generation latency and
throughput measured on the event stream each request sends."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from rbee.common.metrics import DaemonMetrics, Throughput
from rbee.common.wire import End, Error, TaskEvent, Token, WorkerState
from rbee.worker.runtime import WorkerRuntime

STATES = (WorkerState.LOADING, WorkerState.IDLE, WorkerState.BUSY, WorkerState.DRAINING, WorkerState.FAILED)
"""The states a worker itself can be in (the others are its hive's view)."""
INFO_LABELS = ("worker_id", "model", "backend", "device")
"""`rbee_worker_info`'s labels: a worker's identity, joined to its other series by `instance`."""


class WorkerMetrics:
    """Everything `/metrics` shows about this worker beyond the HTTP counters."""

    def __init__(self, base: DaemonMetrics, runtime: WorkerRuntime) -> None:
        self._runtime = runtime
        self._prefix = base.prefix
        self.throughput = Throughput()
        self.first_token = base.histogram("time_to_first_token_seconds",
                                          "From the admitted request to its first token")
        self.duration = base.histogram("generation_duration_seconds",
                                       "From the admitted request to its last event")
        self.generations = base.counter("generations_total", "Generations ended, by outcome (a stop "
                                        "reason, error, or client_gone)", ("outcome",))
        base.scraped(self._collect)

    def observe(self, events: AsyncIterator[TaskEvent]) -> AsyncIterator[TaskEvent]:
        """Pass one request's events through, timing its first token and the whole generation from
        now (call it right after admitting the request)."""
        return self._observe(events, time.monotonic())

    async def _observe(self, events: AsyncIterator[TaskEvent], started: float) -> AsyncIterator[TaskEvent]:
        waiting_for_first = True
        outcome: str = "client_gone"
        try:
            async with aclosing(events):
                async for event in events:
                    if isinstance(event, Token):
                        if waiting_for_first:
                            self.first_token.observe(time.monotonic() - started)
                            waiting_for_first = False
                        self.throughput.add()
                    elif isinstance(event, End):
                        outcome = event.stop_reason
                    elif isinstance(event, Error):
                        outcome = "error"
                    yield event
        finally:
            self.duration.observe(time.monotonic() - started)
            self.generations.labels(outcome).inc()

    def _collect(self) -> Iterable[Metric]:
        runtime = self._runtime
        settings = runtime.settings
        service = runtime.service
        busy = settings.slots - service.pool.free if service else 0
        info = GaugeMetricFamily(self._prefix + "info", "This worker's id, model file, backend and GPU index "
                                 "(empty when none is set) (always 1)", labels=INFO_LABELS)
        device = "" if settings.device is None else str(settings.device)
        model = os.path.basename(settings.model_path)
        info.add_metric((settings.worker_id, model, settings.backend, device), 1)
        state = GaugeMetricFamily(self._prefix + "state", "1 for the worker's current state",
                                  labels=("state",))
        for name in STATES:
            state.add_metric((name,), 1 if runtime.state == name else 0)
        yield info
        yield state
        yield GaugeMetricFamily(self._prefix + "loading_progress", "Share of the model loaded (0 to 1)",
                                value=runtime.progress)
        yield GaugeMetricFamily(self._prefix + "slots", "Slots (generations at once)", value=settings.slots)
        yield GaugeMetricFamily(self._prefix + "slots_busy", "Slots serving a request now", value=busy)
        yield GaugeMetricFamily(self._prefix + "tokens_per_second",
                                "Tokens streamed per second over the last 10 s", value=self.throughput.rate())
        yield CounterMetricFamily(self._prefix + "tokens_generated", "Tokens generated since start",
                                  value=service.tokens_generated if service else 0)
        prompt = CounterMetricFamily(self._prefix + "prompt_tokens", "Prompt tokens since start, by how "
                                     "they got into the KV cache: reused (cells of an earlier request "
                                     "with the same prefix) or decoded", labels=("source",))
        engine = service.engine if service else None
        prompt.add_metric(("reused",), engine.prompt_tokens_reused if engine else 0)
        prompt.add_metric(("decoded",), engine.prompt_tokens_decoded if engine else 0)
        yield prompt

