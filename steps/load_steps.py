"""Steps of the load test: Locust (loadtest/locustfile.py) against real daemons."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
from pathlib import Path

from behave import then, when

from rbee.testing.cluster import http_json
from steps.common import tiny_ref

LOCUSTFILE = Path(__file__).resolve().parents[1] / "loadtest" / "locustfile.py"
SPAWN_RATE = 500
POLL_S = 0.2


def _held(context) -> int:
    """Requests the queen holds now: waiting in its queue plus running on workers."""
    status, body = http_json(f"{context.queen_url}/v2/workers/list")
    if status != 200:
        return 0
    return body["queue"]["waiting"] + sum(w["in_flight"] for w in body["workers"])


def _watch(context, stop: threading.Event) -> None:
    while not stop.wait(POLL_S):
        context.peak_held = max(context.peak_held, _held(context))


@when("Locust runs {users:d} users against the queen for {seconds:d} seconds")
def run_locust(context, users: int, seconds: int) -> None:
    out = context.workdir / "locust"
    context.peak_held = 0
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(context, stop), daemon=True)
    watcher.start()
    env = {**context.env, "RBEE_LOAD_MODEL": tiny_ref(context), "RBEE_LOAD_TOKENS": "8"}
    try:
        context.locust = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
             "-r", str(SPAWN_RATE), "-t", f"{seconds}s", "--stop-timeout", "60", "--host", context.queen_url,
             "--csv", str(out), "--only-summary"],
            capture_output=True, text=True, timeout=seconds + 180, env={**os.environ, **env},
        )
    finally:
        stop.set()
        watcher.join()
    with open(f"{out}_stats.csv", newline="") as rows:
        context.locust_stats = {row["Name"]: row for row in csv.DictReader(rows)}


@then("Locust exits 0 with no failed request and at least {count:d} requests answered")
def locust_clean(context, count: int) -> None:
    result, stats = context.locust, context.locust_stats
    total = stats["Aggregated"]
    tasks, streams = stats["POST /v2/tasks"], stats["stream to [DONE]"]
    print(f"    locust: {tasks['Request Count']} tasks, {tasks['Failure Count']} failed, "
          f"{float(tasks['Requests/s']):.0f}/s; time to headers p50 {tasks['50%']} ms p95 {tasks['95%']} ms; "
          f"whole stream p50 {streams['50%']} ms p95 {streams['95%']} ms; peak held {context.peak_held}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(total["Failure Count"]) == 0, total
    assert int(tasks["Request Count"]) >= count, tasks
    assert streams["Request Count"] == tasks["Request Count"], (streams, tasks)


@then("the queen held at least {count:d} requests at once")
def held_at_once(context, count: int) -> None:
    assert context.peak_held >= count, context.peak_held
