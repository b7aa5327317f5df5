"""Steps of the load test: Locust (loadtest/locustfile.py) against real daemons.

While Locust's users ramp up, long native tasks hold every slot of the worker, so each user's first
request waits in the queen's admission queue whatever the machine's speed; the watcher cancels them
(`DELETE /v2/tasks/{id}`) once the queen holds a request of every user.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from behave import given, then, when

from rbee.testing.cluster import http_json
from rbee.testing.http_client import EventStream, request
from steps.common import LONG_TASK_TOKENS, first_token, open_stream, tiny_ref

LOCUSTFILE = Path(__file__).resolve().parents[1] / "loadtest" / "locustfile.py"
SPAWN_RATE = 500
POLL_S = 0.2


def _held(context) -> int:
    """Requests the queen holds now: waiting in its queue plus running on workers."""
    status, body = http_json(f"{context.queen_url}/v2/workers/list")
    if status != 200:
        return 0
    return body["queue"]["waiting"] + sum(w["in_flight"] for w in body["workers"])


@given("long tasks through the queen hold every slot of that worker")
def hold_slots(context) -> None:
    """One long native task per slot, each streaming (read in the background) from its first token."""
    status, body = http_json(f"{context.queen_url}/v2/workers/list")
    assert status == 200 and len(body["workers"]) == 1, (status, body)
    task = {"model": tiny_ref(context), "prompt": "Once", "max_tokens": LONG_TASK_TOKENS, "ignore_eos": True}
    context.gate = [open_stream(context, f"{context.queen_url}/v2/tasks", task)
                    for _ in range(body["workers"][0]["slots"])]
    for stream in context.gate:
        assert stream.status == 200, stream.error_body()
        first_token(stream)
    context.gate_readers = [threading.Thread(target=stream.read_all, daemon=True) for stream in context.gate]
    for reader in context.gate_readers:
        reader.start()
    assert _held(context) == len(context.gate), _held(context)


def _cancel(stream: EventStream, queen_url: str) -> int:
    """Cancel a long task at the queen; the answer's status."""
    return request("DELETE", f"{queen_url}/v2/tasks/{stream.events[0]['task_id']}").status


def _watch(context, users: int, stop: threading.Event) -> None:
    """Record the peak of Locust's requests the queen holds (the long tasks not counted, even once
    cancelled); cancel the long tasks once every user has a request there."""
    gate = len(context.gate)
    while not stop.wait(POLL_S):
        held = _held(context) - gate
        context.peak_held = max(context.peak_held, held)
        if context.gate_cancels is None and held >= users:
            context.gate_cancels = [_cancel(stream, context.queen_url) for stream in context.gate]
            context.held_at_cancel = held


@when("Locust runs {users:d} users against the queen for {seconds:d} seconds, "
      "the long tasks cancelled once the queen holds a request of every user")
def run_locust(context, users: int, seconds: int) -> None:
    out = context.workdir / "locust"
    context.peak_held = 0
    context.gate_cancels = context.held_at_cancel = None
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(context, users, stop), daemon=True)
    watcher.start()
    context.peak_file = context.workdir / "locust-peak.json"
    env = {**context.env, "RBEE_LOAD_MODEL": tiny_ref(context), "RBEE_LOAD_TOKENS": "8",
           "RBEE_LOAD_PEAK_FILE": str(context.peak_file)}
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


@then("the long tasks ended cancelled, each having held its slot until then")
def gate_cancelled(context) -> None:
    assert context.gate_cancels == [204] * len(context.gate), (context.gate_cancels, context.peak_held)
    for reader in context.gate_readers:
        reader.join(10.0)
    for stream in context.gate:
        end = stream.events[-1]
        assert stream.saw_done and end["type"] == "end" and end["stop_reason"] == "cancelled", end
        assert end["tokens_out"] < LONG_TASK_TOKENS, end


@then("Locust exits 0 with no failed request and at least {count:d} requests answered")
def locust_clean(context, count: int) -> None:
    result, stats = context.locust, context.locust_stats
    total = stats["Aggregated"]
    tasks, streams = stats["POST /v2/tasks"], stats["stream to [DONE]"]
    print(f"    locust: {tasks['Request Count']} tasks, {tasks['Failure Count']} failed, "
          f"{float(tasks['Requests/s']):.0f}/s; time to headers p50 {tasks['50%']} ms p95 {tasks['95%']} ms; "
          f"whole stream p50 {streams['50%']} ms p95 {streams['95%']} ms; peak held {context.peak_held}, "
          f"long tasks cancelled at {context.held_at_cancel}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(total["Failure Count"]) == 0, total
    assert int(tasks["Request Count"]) >= count, tasks
    assert streams["Request Count"] == tasks["Request Count"], (streams, tasks)


@then("Locust's users had at least {count:d} requests streaming from the queen at once, by their own count")
def streaming_at_once(context, count: int) -> None:
    """Counted by the clients: answered with headers, body not yet ended (the queen's count only
    decides when the long tasks are cancelled)."""
    peak = json.loads(context.peak_file.read_text())["peak_streaming"]
    print(f"    locust: at most {peak} requests streaming at once (the queen counted {context.peak_held})")
    assert peak >= count, (peak, context.peak_held)
