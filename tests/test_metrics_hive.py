"""The hive's counters follow the supervisor's audit events (which still reach the audit log),
and its log reader tails and follows files as `rbee logs` needs."""

from __future__ import annotations

import time

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rbee.common.metrics import DaemonMetrics
from rbee.hive.logs import read_new, tail
from rbee.hive.metrics import HiveMetrics, kill_reason


def _scrape(metrics: DaemonMetrics) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_supervisor_events_move_restart_kill_crash_and_shutdown_metrics_and_are_still_recorded():
    base = DaemonMetrics("hive")
    recorded: list[tuple[str, dict]] = []
    audit = HiveMetrics(base).tap(lambda event, **fields: recorded.append((event, fields)))
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
