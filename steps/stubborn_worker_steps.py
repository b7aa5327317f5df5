"""Steps for workers that ignore SIGTERM: the hive's SIGKILL after the stop budget, its audit
record, parallel force-kills at hive shutdown, no zombie left."""

from __future__ import annotations

import json
import time
from pathlib import Path

from behave import given, then, when

from rbee.testing.cluster import alive, wait_until
from rbee.testing.http_client import request
from steps.common import hive_workers, tiny_ref


@given("stubborn workers with a stop budget of {drain:d} seconds of drain and {grace:d} of grace")
def stubborn_workers(context, drain: int, grace: int) -> None:
    context.env |= {"RBEE_ALLOW_FAULTS": "1", "RBEE_FAULTS": "ignore-sigterm",
                    "RBEE_DRAIN_BUDGET_S": str(drain), "RBEE_SIGTERM_GRACE_S": str(grace)}


@given("the hive has {count:d} ready workers for the tiny model")
def ready_workers(context, count: int) -> None:
    for _ in range(count):
        answer = request("POST", f"{context.hive_url}/v1/workers/spawn", {"model": tiny_ref(context)})
        assert answer.status == 202, (answer.status, answer.body)

    def all_idle() -> bool:
        workers = hive_workers(context)
        return len(workers) == count and all(w["state"] == "idle" for w in workers)

    assert wait_until(all_idle, 60, 0.1), hive_workers(context)
    context.workers = hive_workers(context)


@when("I ask the hive to stop its worker")
def stop_its_worker(context) -> None:
    context.stop_began = time.monotonic()
    body = {"worker_id": context.workers[0]["worker_id"]}
    answer = request("POST", f"{context.hive_url}/v1/workers/stop", body)
    assert answer.status == 202, (answer.status, answer.body)


@then("the worker process is still running {seconds:f} seconds after the stop began")
def still_running(context, seconds: float) -> None:
    time.sleep(max(0.0, context.stop_began + seconds - time.monotonic()))
    pid = context.workers[0]["pid"]
    assert alive(pid), f"worker {pid} stopped before its budget ran out: it did not ignore SIGTERM"


@then("the worker process is gone and reaped within {seconds:d} seconds")
def gone_and_reaped(context, seconds: int) -> None:
    pid = context.workers[0]["pid"]
    assert wait_until(lambda: not alive(pid), seconds, 0.1), f"worker {pid} still exists, or is a zombie"


def _force_kills(context) -> list[dict]:
    folder = Path(context.hive.args[context.hive.args.index("--data-dir") + 1]) / "audit"
    records = [json.loads(line) for path in sorted(folder.glob("audit-*.jsonl"))
               for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["event"] == "worker.force_kill"]


@then('the hive\'s audit log has {count:d} "worker.force_kill" record naming the worker, its PID'
      ' and a grace of {grace:d} seconds')
def force_kill_named(context, count: int, grace: int) -> None:
    assert wait_until(lambda: len(_force_kills(context)) == count, 5, 0.1), _force_kills(context)
    record = _force_kills(context)[0]
    worker = context.workers[0]
    expected = (worker["worker_id"], worker["pid"], grace)
    assert (record["worker_id"], record["pid"], record["grace_s"]) == expected, record


@then('the hive\'s audit log has {count:d} "worker.force_kill" records')
def force_kills(context, count: int) -> None:
    wait_until(lambda: len(_force_kills(context)) >= count, 5, 0.1)
    assert len(_force_kills(context)) == count, _force_kills(context)
    assert {r["pid"] for r in _force_kills(context)} == {w["pid"] for w in context.workers[:count]}, \
        _force_kills(context)


@when("I stop the hive with SIGTERM and time it")
def stop_hive_timed(context) -> None:
    began = time.monotonic()
    context.orphans.extend(context.hive.stop())
    context.hive_stop_s = time.monotonic() - began


@then("the hive exited with code 0 in less than {seconds:d} seconds, twice one worker's budget")
def hive_exit_timed(context, seconds: int) -> None:
    assert context.hive.process.returncode == 0, context.hive.process.returncode
    took = context.hive_stop_s
    assert took < seconds, f"the hive took {took:.1f} s: its workers stopped one after another"
