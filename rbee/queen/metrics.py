"""The queen's metrics (`rbee_queen_*`): workers, slots and hives read from the registries at
scrape time; queue wait, time to first token, task latency and tokens measured as the
dispatcher runs each task; hives going stale counted from the registry's audit events.

Model labels come from the worker registry (models some hive runs a worker for), never from
a request body.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from rbee.common.audit import Audit
from rbee.common.metrics import DaemonMetrics
from rbee.queen.routing.hive_registry import HiveRegistry
from rbee.queen.routing.task_meter import TaskMeter
from rbee.queen.routing.worker_registry import WorkerRegistry


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
        states: collections.Counter[tuple[str, str, str]] = collections.Counter()
        slots: collections.Counter[tuple[str, str]] = collections.Counter()
        busy: collections.Counter[tuple[str, str]] = collections.Counter()
        workers = registry.all()
        for worker in workers:
            states[(worker.state, worker.model, worker.backend)] += 1
            slots[(worker.model, worker.backend)] += worker.slots
            busy[(worker.model, worker.backend)] += registry.in_flight(worker.worker_id)
        self.tasks.forget_others({worker.worker_id for worker in workers})
        by_state = GaugeMetricFamily(prefix + "workers", "Workers known from hive heartbeats, by state, "
                                     "model and backend", labels=("state", "model", "backend"))
        for labels, count in sorted(states.items()):
            by_state.add_metric(labels, count)
        total = GaugeMetricFamily(prefix + "worker_slots", "Slots of the known workers, by model and backend",
                                  labels=("model", "backend"))
        used = GaugeMetricFamily(prefix + "worker_slots_busy", "Slots taken by this queen's tasks, by model "
                                 "and backend", labels=("model", "backend"))
        for labels in sorted(slots):
            total.add_metric(labels, slots[labels])
            used.add_metric(labels, busy[labels])
        stale = sum(1 for hive in hives.all() if hive.stale)
        by_freshness = GaugeMetricFamily(prefix + "hives", "Hives that send heartbeats, fresh or stale",
                                         labels=("state",))
        by_freshness.add_metric(("fresh",), len(hives.all()) - stale)
        by_freshness.add_metric(("stale",), stale)
        yield from (by_state, total, used, by_freshness)
        yield GaugeMetricFamily(prefix + "tasks_running", "Tasks streaming from a worker now", value=running)
        yield GaugeMetricFamily(prefix + "tokens_per_second", "Tokens relayed per second over the last 10 s",
                                value=self.tasks.throughput.rate())
