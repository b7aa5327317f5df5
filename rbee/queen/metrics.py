"""The queen's metrics (`rbee_queen_*`): workers, slots and hives read from the registries at
scrape time; queue wait, time to first token, task latency and tokens measured as the
dispatcher runs each task; hives going stale counted from the registry's audit events.

Model labels come from the worker registry (models some hive runs a worker for), never from
a request body.
"""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from rbee.common.audit import Audit
from rbee.common.metrics import DaemonMetrics, Throughput
from rbee.queen.hive_registry import HiveRegistry
from rbee.queen.worker_registry import WorkerRegistry


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

    async def observe(self, events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Pass a task's events through, timing its first token and its whole run."""
        started = time.monotonic()
        worker_id = ""
        waiting_for_first = True
        outcome = "cancelled"
        try:
            async with aclosing(events):
                async for event in events:
                    kind = event.get("type")
                    if kind == "started":
                        worker_id = str(event.get("worker_id", ""))
                    elif kind == "token":
                        if waiting_for_first:
                            self.first_token.observe(time.monotonic() - started)
                            waiting_for_first = False
                        self.tokens.inc()
                        self.throughput.add()
                        self._per_worker[worker_id].add()
                    elif kind in ("end", "error"):
                        outcome = "completed" if kind == "end" else "failed"
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


class QueenMetrics:
    """Everything `/metrics` shows about the queen beyond the HTTP counters."""

    def __init__(self, base: DaemonMetrics) -> None:
        self._base = base
        self.tasks = TaskMeter(base)
        self.stale = base.counter("hive_stale_total", "Times a hive was marked stale after missing its "
                                  "heartbeats")

    def tap(self, audit: Audit) -> Audit:
        """An audit function that counts hives going stale, then records every event with `audit`."""

        def counted(event: str, **fields: Any) -> Any:
            if event == "node.stale":
                self.stale.inc()
            return audit(event, **fields)

        return counted

    def watch(self, registry: WorkerRegistry, hives: HiveRegistry, running: Callable[[], int]) -> None:
        """Show the registries and the running task count at every scrape."""
        self._base.scraped(lambda: self._collect(registry, hives, running()))

    def _collect(self, registry: WorkerRegistry, hives: HiveRegistry, running: int) -> Iterable[Metric]:
        prefix = self._base.prefix
        states: collections.Counter[tuple[str, str]] = collections.Counter()
        slots: collections.Counter[str] = collections.Counter()
        busy: collections.Counter[str] = collections.Counter()
        workers = registry.all()
        for worker in workers:
            states[(worker.state, worker.model)] += 1
            slots[worker.model] += worker.slots
            busy[worker.model] += registry.in_flight(worker.worker_id)
        self.tasks.forget_others({worker.worker_id for worker in workers})
        by_state = GaugeMetricFamily(prefix + "workers", "Workers known from hive heartbeats, by state and "
                                     "model", labels=("state", "model"))
        for (state, model), count in sorted(states.items()):
            by_state.add_metric((state, model), count)
        total = GaugeMetricFamily(prefix + "worker_slots", "Slots of the known workers, by model",
                                  labels=("model",))
        used = GaugeMetricFamily(prefix + "worker_slots_busy", "Slots taken by this queen's tasks, by model",
                                 labels=("model",))
        for model in sorted(slots):
            total.add_metric((model,), slots[model])
            used.add_metric((model,), busy[model])
        stale = sum(1 for hive in hives.all() if hive.stale)
        by_freshness = GaugeMetricFamily(prefix + "hives", "Hives that send heartbeats, fresh or stale",
                                         labels=("state",))
        by_freshness.add_metric(("fresh",), len(hives.all()) - stale)
        by_freshness.add_metric(("stale",), stale)
        yield from (by_state, total, used, by_freshness)
        yield GaugeMetricFamily(prefix + "tasks_running", "Tasks streaming from a worker now", value=running)
        yield GaugeMetricFamily(prefix + "tokens_per_second", "Tokens relayed per second over the last 10 s",
                                value=self.tasks.throughput.rate())
