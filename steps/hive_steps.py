"""Steps driving a hive's worker supervision."""

from __future__ import annotations

import os
import signal

import psutil
from behave import given, then, when

from rbee.testing.cluster import alive, http_json, wait_until
from rbee.testing.http_client import request
from steps.common import hive_workers, tiny_ref


def _spawn(context, ref: str) -> None:
    context.answer = request("POST", f"{context.hive_url}/v1/workers/spawn", {"model": ref})
    if context.answer.status == 202:
        context.spawned = [*getattr(context, "spawned", []), context.answer.json()]




@when("I ask the hive to spawn a worker for the tiny model")
def spawn_tiny(context) -> None:
    _spawn(context, tiny_ref(context))


@when('I ask the hive to spawn a worker for "{ref}"')
def spawn_ref(context, ref: str) -> None:
    _spawn(context, ref)


@when("I ask the hive to spawn a worker for a file that is not a GGUF")
def spawn_not_gguf(context) -> None:
    fake = context.workdir / "fake.gguf"
    fake.write_bytes(b"this is not a model")
    _spawn(context, f"file://{fake}")


@then('the spawn answer is 202 with state "{state}"')
def spawn_answer(context, state: str) -> None:
    assert context.answer.status == 202, context.answer
    body = context.answer.json()
    assert body["state"] == state and body["pid"] > 0 and body["port"] > 0, body


def _ready_workers(context, count: int, timeout: float) -> list[dict]:
    workers: list[dict] = []

    def check() -> bool:
        nonlocal workers
        workers = hive_workers(context)
        return len(workers) == count and all(w["state"] == "idle" for w in workers)

    assert wait_until(check, timeout, 0.1), workers
    return workers


@then('the hive lists the worker in state "idle" within {seconds:d} seconds')
def listed_ready(context, seconds: int) -> None:
    context.workers = _ready_workers(context, 1, seconds)


@then('the hive lists {count:d} workers in state "idle" within {seconds:d} seconds on different ports')
def listed_two(context, count: int, seconds: int) -> None:
    workers = _ready_workers(context, count, seconds)
    assert len({w["port"] for w in workers}) == count, workers


@then("the listed PID is a running process serving the listed port")
def pid_serves_port(context) -> None:
    worker = context.workers[0]
    process = psutil.Process(worker["pid"])
    assert process.ppid() == context.hive.pid
    ports = {c.laddr.port for c in process.net_connections(kind="tcp") if c.status == "LISTEN"}
    assert worker["port"] in ports, (worker, ports)
    assert http_json(f"{worker['url']}/health")[1]["worker_id"] == worker["worker_id"]


@given("the hive has a ready worker for the tiny model")
def ready_worker(context) -> None:
    _spawn(context, tiny_ref(context))
    context.workers = _ready_workers(context, 1, 30)


@when("I kill the worker process with SIGKILL")
def kill_worker(context) -> None:
    os.kill(context.workers[0]["pid"], signal.SIGKILL)


@then("the hive lists no worker within {seconds:d} seconds")
def no_worker(context, seconds: int) -> None:
    assert wait_until(lambda: hive_workers(context) == [], seconds), hive_workers(context)


@when("I stop the hive with SIGTERM")
def stop_hive(context) -> None:
    context.orphans.extend(context.hive.stop())


@when("I ask the worker to shut down through its admin endpoint")
def admin_shutdown(context) -> None:
    answer = request("POST", f"{context.workers[0]['url']}/v1/admin/shutdown")
    assert answer.status == 202, answer


@when("I kill the hive with SIGKILL")
def kill_hive(context) -> None:
    context.orphans.extend(context.hive.stop(signal.SIGKILL))


@then("no process the hive started is still running")
def hive_children_gone(context) -> None:
    pids = [w["pid"] for w in context.workers]
    assert not context.orphans, context.orphans
    assert not any(alive(pid) for pid in pids), pids
