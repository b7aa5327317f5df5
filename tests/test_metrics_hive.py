"""The hive's counters follow the supervisor's audit events (which still reach the audit log), its
GPU gauges show what NVML reports at each scrape (here a stand-in device list), and its log
reader tails and follows files as `rbee logs` needs."""

from __future__ import annotations

import time

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rbee.common.metrics import DaemonMetrics
from rbee.hive.gpus import Gpu
from rbee.hive.logs import read_new, tail
from rbee.hive.metrics import GPU_GAUGES, HiveMetrics, kill_reason

GIB = 1024**3
STAND_IN_GPUS = [
    Gpu(0, "GPU-aaaa", "NVIDIA H200", 141 * GIB, 100 * GIB, 41 * GIB, 87.0, 61.0, 412.5),
    Gpu(1, "GPU-bbbb", "NVIDIA T4", 16 * GIB, 16 * GIB, 0, None, 40.0, None),
]
"""What NVML would report on a two-GPU node whose second GPU reads no utilisation or power."""


def _no_gpus() -> list[Gpu]:
    return []


def _scrape(metrics: DaemonMetrics) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_supervisor_events_move_restart_kill_crash_and_shutdown_metrics_and_are_still_recorded():
    base = DaemonMetrics("hive")
    recorded: list[tuple[str, dict]] = []
    audit = HiveMetrics(base, _no_gpus).tap(lambda event, **fields: recorded.append((event, fields)))
    audit("worker.spawn", worker_id="w-1", pid=10, model="default", port=8081, restarts=0)
    audit("worker.kill", worker_id="w-1", pid=10, reason="missed 3 heartbeats (1.6s silent)")
    audit("worker.spawn", worker_id="w-1", pid=11, model="default", port=8081, restarts=1)
    audit("worker.crashed", worker_id="w-1", pid=11, exit_code=-9)
    audit("worker.kill", worker_id="w-1", pid=12, reason="decode loop stalled")
    audit("worker.stop", worker_id="w-1", reason="stop requested through the API")
    time.sleep(0.05)
    audit("worker.removed", worker_id="w-1", state="stopped", exit_code=0)
    audit("worker.removed", worker_id="w-2", state="failed", exit_code=3)
    samples = _scrape(base)
    assert samples[("rbee_hive_worker_restarts_total", frozenset({("model", "default")}))] == 1
    assert samples[("rbee_hive_worker_force_kills_total", frozenset({("reason", "missed_heartbeats")}))] == 1
    assert samples[("rbee_hive_worker_force_kills_total", frozenset({("reason", "decode_stalled")}))] == 1
    assert samples[("rbee_hive_worker_crashes_total", frozenset())] == 1
    assert samples[("rbee_hive_worker_shutdown_duration_seconds_count", frozenset())] == 1
    assert samples[("rbee_hive_worker_shutdown_duration_seconds_sum", frozenset())] >= 0.05
    assert [event for event, _ in recorded] == [
        "worker.spawn", "worker.kill", "worker.spawn", "worker.crashed", "worker.kill", "worker.stop",
        "worker.removed", "worker.removed",
    ]


def _gpu(index: int) -> frozenset:
    gpu = STAND_IN_GPUS[index]
    return frozenset({("gpu", str(index)), ("uuid", gpu.uuid), ("name", gpu.name)})


def test_each_gpu_reading_is_a_gauge_labelled_by_index_uuid_and_name_read_at_every_scrape():
    reads: list[int] = []

    def stand_in() -> list[Gpu]:
        reads.append(1)
        return STAND_IN_GPUS

    base = DaemonMetrics("hive")
    HiveMetrics(base, stand_in)
    samples = _scrape(base)
    assert samples[("rbee_hive_gpu_memory_used_bytes", _gpu(0))] == 41 * GIB
    assert samples[("rbee_hive_gpu_memory_total_bytes", _gpu(1))] == 16 * GIB
    assert samples[("rbee_hive_gpu_utilization_ratio", _gpu(0))] == 0.87
    assert samples[("rbee_hive_gpu_temperature_celsius", _gpu(1))] == 40.0
    assert samples[("rbee_hive_gpu_power_watts", _gpu(0))] == 412.5
    gpu_samples = {key for key in samples if key[0].startswith("rbee_hive_gpu_")}
    assert ("rbee_hive_gpu_utilization_ratio", _gpu(1)) not in gpu_samples
    assert ("rbee_hive_gpu_power_watts", _gpu(1)) not in gpu_samples
    assert len(gpu_samples) == 2 * len(GPU_GAUGES) - 2
    _scrape(base)
    assert len(reads) == 2


def test_a_node_without_gpus_exports_the_gpu_families_without_samples():
    base = DaemonMetrics("hive")
    HiveMetrics(base, _no_gpus)
    text = generate_latest(base.registry).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for gauge in GPU_GAUGES:
        family = families["rbee_hive_" + gauge.name]
        assert family.type == "gauge" and family.samples == [], family


def test_a_gpu_nvml_cannot_read_costs_the_scrape_only_the_gpu_samples():
    def lost() -> list[Gpu]:
        raise RuntimeError("NVML: GPU is lost")

    base = DaemonMetrics("hive")
    audit = HiveMetrics(base, lost).tap(lambda event, **fields: None)
    audit("worker.crashed", worker_id="w-1", pid=11, exit_code=-9)
    samples = _scrape(base)
    assert samples[("rbee_hive_worker_crashes_total", frozenset())] == 1
    assert not [key for key in samples if key[0].startswith("rbee_hive_gpu_")]


def test_kill_reasons_map_to_a_closed_set_of_labels():
    assert kill_reason("still loading after 300s") == "loading_timeout"
    assert kill_reason("something new") == "other"


def test_tail_returns_the_last_lines_and_read_new_only_complete_new_ones(tmp_path):
    log = tmp_path / "hive.log"
    log.write_text("".join(f"line {n}\n" for n in range(5000)))
    lines, offset = tail(log, 3)
    assert lines == ["line 4997", "line 4998", "line 4999"] and offset == log.stat().st_size
    assert tail(log, 0) == ([], offset)
    with log.open("a") as handle:
        handle.write("new 1\nnew 2\npartial")
    lines, offset = read_new(log, offset)
    assert lines == ["new 1", "new 2"]
    with log.open("a") as handle:
        handle.write(" line\n")
    assert read_new(log, offset)[0] == ["partial line"]
    log.write_text("after rotation\n")
    assert read_new(log, offset)[0] == ["after rotation"]
