"""Lifecycle timings of real daemons: crash and hang detection, restart latency, drain-and-stop
with 4 workers, cancellation latency. Absolute figures (no baseline does these things).

Run: .venv/bin/python bench/lifecycle.py   (about a minute on 2 cores)
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

from rbee.testing.cluster import Daemon, hive_daemon, http_json, queen_daemon, wait_until
from rbee.testing.http_client import EventStream, request
from rbee.testing.tiny_model import build_tiny_gguf

ROUNDS = 5


def _workers(hive_url: str) -> list[dict]:
    return http_json(f"{hive_url}/v1/workers/list")[1]["workers"]


def _spawn_ready(hive_url: str, model: Path) -> dict:
    request("POST", f"{hive_url}/v1/workers/spawn", {"model": f"file://{model}"})
    assert wait_until(lambda: [w["state"] for w in _workers(hive_url)] == ["idle"], 30, 0.01)
    return _workers(hive_url)[0]


def _serving_worker(hive_url: str, model: Path) -> dict:
    """The hive's one worker, spawned first if there is none."""
    workers = _workers(hive_url)
    return workers[0] if workers else _spawn_ready(hive_url, model)


def _poll_until(predicate, timeout: float = 60.0) -> float:
    """Seconds until `predicate` holds, polled every millisecond."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError
        time.sleep(0.001)
    return time.monotonic() - start


def _started(daemon: Daemon, env: dict[str, str]) -> Daemon:
    daemon.start(env=env)
    daemon.wait_healthy(60)
    return daemon


def crash_and_restart(work: Path, model: Path) -> tuple[list[float], list[float]]:
    """SIGKILL a worker: time to `crashed` in the hive's list, then to serving again.

    Each round uses a fresh hive, so every restart is a first one (delay 1 s ±20 %), not a
    later, doubled one.
    """
    detect, restart = [], []
    for round_number in range(ROUNDS):
        hive = _started(hive_daemon(work / f"crash-{round_number}"), {})
        try:
            worker = _serving_worker(hive.base_url, model)
            killed_at = time.monotonic()
            os.kill(worker["pid"], signal.SIGKILL)
            _poll_until(lambda w=worker, h=hive: _workers(h.base_url)[0]["state"] == "crashed"
                        or _workers(h.base_url)[0]["pid"] != w["pid"])
            detect.append(time.monotonic() - killed_at)
            _poll_until(lambda h=hive: _workers(h.base_url)[0]["state"] == "idle")
            restart.append(time.monotonic() - killed_at)
        finally:
            hive.stop()
    return detect, restart


def hang_detection(work: Path, model: Path, env: dict[str, str]) -> list[float]:
    """A decode loop that stalls: time from the stall to the hive killing the worker."""
    hive = _started(hive_daemon(work / "hang"), env)
    times = []
    try:
        for _ in range(ROUNDS):
            worker = _serving_worker(hive.base_url, model)
            stream = EventStream(f"{worker['url']}/v1/inference",
                                 {"prompt": "Once", "max_tokens": 50, "ignore_eos": True}).open()
            stalled_at = time.monotonic()
            _poll_until(lambda w=worker: _workers(hive.base_url)[0]["state"] == "unhealthy"
                        or _workers(hive.base_url)[0]["pid"] != w["pid"])
            times.append(time.monotonic() - stalled_at)
            stream.close()
            _poll_until(lambda: _workers(hive.base_url)[0]["state"] == "idle")
    finally:
        hive.stop()
    return times


def drain_and_stop(work: Path, model: Path) -> list[float]:
    """`rbee up` with 4 idle workers (4 models): SIGTERM until the process has exited."""
    models = []
    for index in range(4):
        copy = work / f"model-{index}.gguf"
        shutil.copyfile(model, copy)
        models.append(copy)
    times = []
    for round_ in range(ROUNDS):
        up = _started(queen_daemon(work / f"up-{round_}", "up"), {})
        for copy in models:
            body = {"model": f"file://{copy}", "prompt": "Hi", "max_tokens": 2}
            EventStream(f"{up.base_url}/v2/tasks", body).open().read_all()
        assert len(up.descendants()) == 5, up.descendants()
        started = time.monotonic()
        survivors = up.stop(signal.SIGTERM)
        times.append(time.monotonic() - started)
        assert not survivors, survivors
    return times


def cancellation(work: Path, model: Path) -> list[float]:
    """DELETE /v2/tasks on a running task: time until the worker's slot is free again."""
    queen = _started(queen_daemon(work / "cancel", extra=["--worker-ctx-size", "8192"]), {})
    times = []
    try:
        for _ in range(ROUNDS):
            body = {"model": f"file://{model}", "prompt": "Once", "max_tokens": 6000, "ignore_eos": True}
            stream = EventStream(f"{queen.base_url}/v2/tasks", body).open()
            started = stream.next_event()
            stream.next_event()
            worker_url = _workers(queen.hive_url)[0]["url"]
            at = time.monotonic()
            request("DELETE", f"{queen.base_url}/v2/tasks/{started['task_id']}")
            _poll_until(lambda url=worker_url: http_json(f"{url}/health")[1]["slots_free"] == 2)
            times.append(time.monotonic() - at)
            stream.read_all()
    finally:
        queen.stop()
    return times


def _show(name: str, values: list[float]) -> None:
    print(f"| {name} | {statistics.median(values) * 1000:.0f} ms | {min(values) * 1000:.0f} ms "
          f"| {max(values) * 1000:.0f} ms | {len(values)} |")


def main() -> None:
    """Measure and print a Markdown table."""
    work = Path(tempfile.mkdtemp(prefix="rbee-bench-lifecycle-"))
    model = build_tiny_gguf(work / "tiny.gguf", context_length=8192)
    hang_env = {"RBEE_ALLOW_FAULTS": "1", "RBEE_FAULTS": "stall-after=5",
                "RBEE_STALL_TIMEOUT_S": "2", "RBEE_HEARTBEAT_INTERVAL_S": "0.5"}
    try:
        detect, restart = crash_and_restart(work, model)
        hang = hang_detection(work, model, hang_env)
        drain = drain_and_stop(work, model)
        cancel = cancellation(work, model)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| what | median | min | max | rounds |\n|---|---|---|---|---|")
    _show("crash detection (SIGKILL → hive lists it crashed)", detect)
    _show("restart latency (SIGKILL → serving again; backoff 1 s ±20 %)", restart)
    _show("hang detection (decode stall → killed; stall timeout 2 s, heartbeat 0.5 s)", hang)
    _show("drain-and-stop, `rbee up` with 4 idle workers (SIGTERM → exited)", drain)
    _show("cancellation (DELETE /v2/tasks → worker slot free)", cancel)


if __name__ == "__main__":
    main()
