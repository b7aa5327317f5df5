"""Steps about worker supervision: crashes, hangs, restarts and faults."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from behave import given, then, when

from rbee.testing.cluster import wait_until
from steps.common import hive_workers, start_generation


def _only_worker(context) -> dict:
    workers = hive_workers(context)
    assert len(workers) == 1, workers
    return workers[0]


@then('the hive lists the worker as "crashed" or restarting within {seconds:d} seconds')
def crashed_or_restarting(context, seconds: int) -> None:
    old_pid = context.workers[0]["pid"]

    def noticed() -> bool:
        worker = _only_worker(context)
        return worker["state"] == "crashed" or worker["pid"] != old_pid

    assert wait_until(noticed, seconds, 0.01), hive_workers(context)


@then("the worker is serving again within {seconds:d} seconds with {restarts:d} restart and a new PID")
def serving_again(context, seconds: int, restarts: int) -> None:
    old_pid = context.workers[0]["pid"]
    latest: dict = {}

    def serving() -> bool:
        nonlocal latest
        workers = hive_workers(context)
        latest = workers[0] if workers else {}
        return bool(latest) and latest["restarts"] >= restarts and latest["state"] in ("idle", "busy")

    assert wait_until(serving, seconds, 0.1), latest
    assert latest["pid"] != old_pid and latest["last_restart_at"], latest
    context.restarted = latest


@then("the worker's last exit code is {code:d}")
def last_exit_code(context, code: int) -> None:
    assert context.restarted["last_exit_code"] == code, context.restarted


@then('the worker\'s last kill reason is "{reason}"')
def last_kill_reason(context, reason: str) -> None:
    assert context.restarted["last_kill_reason"] == reason, context.restarted


@then('the worker\'s last kill reason mentions "{text}"')
def last_kill_reason_mentions(context, text: str) -> None:
    assert text in (context.restarted["last_kill_reason"] or ""), context.restarted


@then("the hive log shows restart delays of {first}s, {second}s and {third}s")
def restart_delays(context, first: str, second: str, third: str) -> None:
    log = context.hive.log_path.read_text()
    delays = re.findall(r"restarting worker \S+ in ([0-9.]+)s", log)
    assert delays == [first, second, third], delays


@then("the hive log says the circuit is open")
def circuit_open(context) -> None:
    assert "circuit open" in context.hive.log_path.read_text()


@then('the hive log says the worker was hung because "{reason}"')
def hung_reason(context, reason: str) -> None:
    log = context.hive.log_path.read_text()
    assert re.search(r"worker \S+ \(pid \d+\) is hung: " + re.escape(reason), log), log[-2000:]


@given("a generation is started on the worker")
@when("a generation is started on the worker")
def generation_started(context) -> None:
    start_generation(context, context.workers[0]["url"])


@when("I start a worker with RBEE_FAULTS set but RBEE_ALLOW_FAULTS unset")
def worker_without_allow(context) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RBEE_ALLOW_FAULTS"}
    env["RBEE_FAULTS"] = "crash-on-load"
    context.result = subprocess.run(
        [sys.executable, "-m", "rbee", "worker", "--model", str(context.tiny_model),
         "--port", "1", "--worker-id", "refused"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )


@then("the worker exits with code {code:d} and says fault injection is off")
def refused(context, code: int) -> None:
    assert context.result.returncode == code, context.result
    assert "fault injection is off" in context.result.stderr, context.result.stderr
