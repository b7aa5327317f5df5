"""The hive's metrics (`rbee_hive_*`): workers, downloads and the node's GPUs (through NVML) read
at scrape time; restarts, force-kills, crashes and worker shutdown times counted from the
supervisor's audit events, which already mark each of those moments."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from rbee.common.audit import Audit
from rbee.common.metrics import DaemonMetrics
from rbee.common.wire import WorkerState
from rbee.hive import gpus
from rbee.hive.downloads import Downloader
from rbee.hive.supervisor import WorkerSupervisor

KILL_REASONS = (
    ("missed", "missed_heartbeats"), ("decode", "decode_stalled"), ("still loading", "loading_timeout")
)
"""How the supervisor words why it killed a hung worker → the `reason` label."""
SHUTDOWN_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
GPU_LABELS = ("gpu", "uuid", "name")
GpuLister = Callable[[], list[gpus.Gpu]]
log = logging.getLogger("rbee.hive.metrics")


@dataclass(frozen=True)
class GpuGauge:
    """One per-GPU gauge: its name (without the prefix), help text and reading of a `Gpu`."""

    name: str
    doc: str
    read: Callable[[gpus.Gpu], float | None]


def _ratio(percent: float | None) -> float | None:
    return None if percent is None else percent / 100


GPU_GAUGES = (
    GpuGauge("gpu_memory_used_bytes", "GPU memory in use (every process), by GPU", lambda g: g.used_bytes),
    GpuGauge("gpu_memory_total_bytes", "GPU memory in all, by GPU", lambda g: g.total_bytes),
    GpuGauge("gpu_utilization_ratio", "Share of the last sample period a kernel ran on the GPU (0 to 1)",
             lambda g: _ratio(g.utilization_pct)),
    GpuGauge("gpu_temperature_celsius", "GPU core temperature", lambda g: g.temperature_c),
    GpuGauge("gpu_power_watts", "GPU power draw", lambda g: g.power_w),
)
"""What the hive exports per NVIDIA GPU; a reading the GPU does not support is left out."""


def kill_reason(text: str) -> str:
    """The label for a kill reason as the worker owner words it."""
    return next((label for prefix, label in KILL_REASONS if text.startswith(prefix)), "other")


class HiveMetrics:
    """Everything `/metrics` shows about this hive beyond the HTTP counters."""

    def __init__(self, base: DaemonMetrics, list_gpus: GpuLister = gpus.list_devices) -> None:
        """`list_gpus` reads the node's GPUs at each scrape (NVML; a stand-in list in tests)."""
        self._base = base
        self._list_gpus = list_gpus
        base.scraped(self._collect_gpus)
        self.restarts = base.counter("worker_restarts_total", "Workers restarted after a crash or a kill, "
                                     "by model", ("model",))
        self.kills = base.counter("worker_force_kills_total", "Hung workers the hive killed, by reason "
                                  "(missed_heartbeats, decode_stalled, loading_timeout)", ("reason",))
        self.crashes = base.counter("worker_crashes_total", "Worker processes that exited unexpectedly")
        self.evictions = base.counter("worker_evictions_total", "Idle workers stopped to make room for a "
                                      "spawn, by the spawn's shortage (INSUFFICIENT_RAM, INSUFFICIENT_VRAM)",
                                      ("reason",))
        self.shutdown = base.histogram(
            "worker_shutdown_duration_seconds",
            "From a stop request to the worker process's exit (drain, SIGTERM, SIGKILL)",
            buckets=SHUTDOWN_BUCKETS,
        )
        self._stopping: dict[str, float] = {}

    def watch(self, supervisor: WorkerSupervisor, downloader: Downloader) -> None:
        """Show the supervisor's workers and the downloader's jobs at every scrape."""
        self._base.scraped(lambda: self._collect(supervisor, downloader))

    def tap(self, audit: Audit) -> Audit:
        """An audit function that counts the supervisor's events, then records them with `audit`."""

        def counted(event: str, **fields: Any) -> Any:
            self._count(event, fields)
            return audit(event, **fields)

        return counted

    def _count(self, event: str, fields: dict[str, Any]) -> None:
        worker_id = str(fields.get("worker_id", ""))
        if event == "worker.spawn" and fields.get("restarts"):
            self.restarts.labels(str(fields.get("model", "unknown"))).inc()
        elif event == "worker.kill":
            self.kills.labels(kill_reason(str(fields.get("reason", "")))).inc()
        elif event == "worker.crashed":
            self.crashes.inc()
        elif event == "worker.evicted":
            self.evictions.labels(str(fields.get("reason", "unknown"))).inc()
        elif event == "worker.stop":
            self._stopping.setdefault(worker_id, time.monotonic())
        elif event == "worker.removed" and worker_id in self._stopping:
            self.shutdown.observe(time.monotonic() - self._stopping.pop(worker_id))

    def _collect(self, supervisor: WorkerSupervisor, downloads: Downloader) -> Iterable[Metric]:
        prefix = self._base.prefix
        states: collections.Counter[tuple[str, str]] = collections.Counter()
        slots: collections.Counter[str] = collections.Counter()
        busy: collections.Counter[str] = collections.Counter()
        for record in supervisor.list():
            states[(record.state, record.model.name)] += 1
            slots[record.model.name] += record.slots
            if record.state in (WorkerState.IDLE, WorkerState.BUSY):
                busy[record.model.name] += record.slots - record.slots_free
        workers = GaugeMetricFamily(prefix + "workers", "Workers this hive owns, by state and model",
                                    labels=("state", "model"))
        for (state, model), count in sorted(states.items()):
            workers.add_metric((state, model), count)
        total = GaugeMetricFamily(prefix + "worker_slots", "Slots of this hive's workers, by model",
                                  labels=("model",))
        used = GaugeMetricFamily(prefix + "worker_slots_busy", "Slots busy as the workers' last "
                                 "heartbeats reported, by model", labels=("model",))
        for model in sorted(slots):
            total.add_metric((model,), slots[model])
            used.add_metric((model,), busy[model])
        failures = CounterMetricFamily(prefix + "download_failures", "Model downloads that failed, "
                                       "by error code", labels=("reason",))
        for code, count in sorted(downloads.failures.items()):
            failures.add_metric((code,), count)
        yield from (workers, total, used, failures)
        yield GaugeMetricFamily(prefix + "downloads_active", "Model downloads running now",
                                value=downloads.active_count)
        yield CounterMetricFamily(prefix + "download_bytes", "Bytes received from model sources",
                                  value=downloads.bytes_received)
        yield GaugeMetricFamily(prefix + "draining", "1 while the hive stops its workers to shut down",
                                value=int(supervisor.draining))

    def _collect_gpus(self) -> Iterable[Metric]:
        """One sample per GPU and reading, read from NVML now; no GPU (or NVML failing) gives none."""
        try:
            devices = self._list_gpus()
        except Exception:  # a GPU NVML cannot read must not cost the scrape the other metrics
            log.warning("cannot read the GPUs through NVML", exc_info=True)
            devices = []
        for gauge in GPU_GAUGES:
            family = GaugeMetricFamily(self._base.prefix + gauge.name, gauge.doc, labels=GPU_LABELS)
            for gpu in devices:
                value = gauge.read(gpu)
                if value is not None:
                    family.add_metric((str(gpu.index), gpu.uuid, gpu.name), value)
            yield family
