"""Steps about heartbeats, staleness and registries rebuilt after restarts."""

from __future__ import annotations

import os
import signal

from behave import given, then, when

from rbee.common.ports import free_port
from rbee.testing.cluster import alive, hive_daemon, http_json, queen_daemon, wait_until
from rbee.testing.http_client import EventStream, request
from steps.common import queen_workers_list, started, tiny_ref


def _hive_pid(context) -> int:
    return http_json(f"{context.hive_url}/v1/health")[1]["pid"]


def _queen_hives(context) -> list[dict]:
    return queen_workers_list(context)["hives"]


@when("the queen's hive is frozen with SIGSTOP")
def freeze_hive(context) -> None:
    context.frozen_hive = _hive_pid(context)
    os.kill(context.frozen_hive, signal.SIGSTOP)


@when("the queen's hive is resumed with SIGCONT")
def resume_hive(context) -> None:
    os.kill(context.frozen_hive, signal.SIGCONT)


@then("the queen lists the hive as {freshness} within {seconds:d} seconds")
def hive_freshness(context, freshness: str, seconds: int) -> None:
    want_stale = freshness == "stale"
    assert wait_until(
        lambda: any(h["stale"] == want_stale for h in _queen_hives(context)), seconds, 0.05
    ), _queen_hives(context)


@then('a native task for the tiny model is refused with 503 "{code}"')
def task_refused(context, code: str) -> None:
    answer = request("POST", f"{context.queen_url}/v2/tasks",
                     {"model": tiny_ref(context), "prompt": "Hi", "max_tokens": 4}, timeout=10)
    assert answer.status == 503 and answer.json()["error"]["code"] == code, answer


@then("a native task for the tiny model streams to its end")
def task_streams(context) -> None:
    stream = EventStream(f"{context.queen_url}/v2/tasks",
                         {"model": tiny_ref(context), "prompt": "Hi", "max_tokens": 4}).open()
    context.streams.append(stream)
    events = stream.read_all()
    assert stream.status == 200 and events[-1]["type"] == "end", events


def _queen_and_own_hive(context, queen_flags: list[str]) -> None:
    """A hive started first on the queen's hive port, heartbeating to a queen started next."""
    context.queen_ports = (free_port(), free_port())
    queen_port, hive_port = context.queen_ports
    context.queen_url = f"http://127.0.0.1:{queen_port}"
    context.hive = started(
        context, hive_daemon(context.workdir, ["--queen-url", context.queen_url], port=hive_port)
    )
    context.hive_url = context.hive.base_url
    extra = ["--worker-ctx-size", "8192", *queen_flags]
    context.queen = started(context, queen_daemon(context.workdir, extra=extra, ports=context.queen_ports))


@given("a queen and a separately started hive that heartbeats to it")
def queen_and_own_hive(context) -> None:
    _queen_and_own_hive(context, [])


@when("the queen is killed with SIGKILL and started again on the same ports")
def restart_queen(context) -> None:
    context.old_workers = http_json(f"{context.hive_url}/v1/workers/list")[1]["workers"]
    context.queen.stop(signal.SIGKILL)
    context.queen = started(
        context,
        queen_daemon(context.workdir, extra=["--worker-ctx-size", "8192"], ports=context.queen_ports),
    )


@then("the new queen lists the worker within {seconds:d} seconds without being asked to route anything")
def new_queen_lists(context, seconds: int) -> None:
    wanted = {w["worker_id"] for w in context.old_workers}
    assert wanted

    def listed() -> bool:
        body = http_json(f"{context.queen_url}/v2/workers/list")[1]
        return {w["worker_id"] for w in body.get("workers", [])} == wanted

    assert wait_until(listed, seconds, 0.05), http_json(f"{context.queen_url}/v2/workers/list")


@when("I kill the hive with SIGKILL but leave its stuck worker running")
def kill_hive_keep_worker(context) -> None:
    context.stuck_pid = context.workers[0]["pid"]
    os.kill(context.hive.pid, signal.SIGKILL)
    context.hive.process.wait(5)
    assert not wait_until(lambda: not alive(context.stuck_pid), 3.0), "the stuck worker exited"


@when("a new hive starts on the same data folder")
def new_hive(context) -> None:
    context.hive = started(context, hive_daemon(context.workdir), timeout=60)


@then("the stuck worker from the previous run is gone within {seconds:d} seconds")
def stuck_gone(context, seconds: int) -> None:
    assert wait_until(lambda: not alive(context.stuck_pid), seconds), context.stuck_pid


@then("the new hive's log says it stopped a worker left by a previous run")
def log_says_leftover(context) -> None:
    assert "left by a previous hive run" in context.hive.log_path.read_text()


@given("a queen with --external-hive and a separately started hive on its hive port")
def queen_with_external_hive(context) -> None:
    _queen_and_own_hive(context, ["--external-hive"])


@when("the separately started hive is stopped")
def stop_own_hive(context) -> None:
    context.orphans.extend(context.hive.stop())


@then("no hive process runs under the queen")
def no_hive_under_queen(context) -> None:
    assert context.queen.descendants() == [], context.queen.descendants()
