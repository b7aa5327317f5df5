"""Steps about weighted fair queueing: named keys sharing one model's admission queue, measured
from the outside (when each task was sent and when its first event came)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from behave import given, then, when

from rbee.testing.cluster import wait_until
from rbee.testing.http_client import EventStream, request
from steps.cluster_steps import start_queen
from steps.common import tiny_ref

TASK_TOKENS = 8
BACKLOG_TIMEOUT_S = 60.0


@dataclass
class Sent:
    """One task as its client saw it: its key, when it was sent, when its first event came, how it
    ended."""

    key: str
    sent: float
    first_event: float | None = None
    end: str | None = None


def _run(context, key: str) -> Sent:
    """One native task of the tiny model with `key`'s secret, to its end."""
    body = {"model": tiny_ref(context), "prompt": "Hi", "max_tokens": TASK_TOKENS, "ignore_eos": True}
    record = Sent(key, time.monotonic())
    context.fair_tasks.append(record)
    stream = EventStream(f"{context.queen_url}/v2/tasks", body, timeout=120,
                         headers_out={"Authorization": f"Bearer {context.keys[key]}"}).open()
    try:
        if stream.status != 200:
            record.end = f"HTTP {stream.status}"
            return record
        event = stream.next_event()
        record.first_event = time.monotonic()
        while event is not None:
            record.end = event["type"]
            event = stream.next_event()
        return record
    finally:
        stream.close()


def _queued(context) -> int:
    answer = request("GET", f"{context.queen_url}/v2/workers/list",
                     headers={"Authorization": f"Bearer {context.tokens['queen']}"})
    return answer.json()["queue"]["waiting"]


@given("a queen with those tokens on free loopback ports whose workers have {slots:d} slot")
def queen_with_tokens_and_slots(context, slots: int) -> None:
    start_queen(context, *(item for pair in context.token_flags.items() for item in pair),
                "--worker-slots", str(slots))


@given('the inference key "{name}" of weight {weight:g}, created with the queen\'s token')
def inference_key(context, name: str, weight: float) -> None:
    answer = request("POST", f"{context.queen_url}/v2/keys",
                     {"name": name, "scopes": ["inference"], "weight": weight},
                     headers={"Authorization": f"Bearer {context.tokens['queen']}"})
    assert answer.status == 201, (answer.status, answer.body)
    context.keys = {**getattr(context, "keys", {}), name: answer.json()["key"]}
    context.fair_tasks = getattr(context, "fair_tasks", [])


def _keep_waiting(context, keys: list[str], count: int) -> None:
    """`count` threads per key, each sending a task as soon as its last one ended, until the
    scenario's end; back once 3 in 4 of them wait in the queue."""
    stop = threading.Event()

    def loop(key: str) -> None:
        while not stop.is_set():
            try:
                _run(context, key)
            except OSError:
                return

    threads = [threading.Thread(target=loop, args=(key,), daemon=True) for key in keys for _ in range(count)]
    for thread in threads:
        thread.start()

    def stop_flood() -> None:
        stop.set()
        for thread in threads:
            thread.join(30)

    context.add_cleanup(stop_flood)
    assert wait_until(lambda: _queued(context) >= len(threads) * 3 // 4, BACKLOG_TIMEOUT_S, 0.2), \
        f"the backlog did not form: {_queued(context)} queued"


@given('the key "{key}" keeps {count:d} native tasks of the tiny model waiting in the queue')
def flood(context, key: str, count: int) -> None:
    _keep_waiting(context, [key], count)


@given('the keys "{first}" and "{second}" each keep {count:d} native tasks of the tiny model queued')
def floods(context, first: str, second: str, count: int) -> None:
    _keep_waiting(context, [first, second], count)


@when("the tasks served are counted for {seconds:d} seconds")
def count_served(context, seconds: int) -> None:
    context.window = (time.monotonic(), time.monotonic() + seconds)
    time.sleep(seconds)


@then('the key "{heavy}" was served {low:g} to {high:g} tasks for each one of the key "{light}" in them')
def served_ratio(context, heavy: str, light: str, low: float, high: float) -> None:
    start, end = context.window
    served = {key: sum(1 for t in list(context.fair_tasks) if t.key == key and t.first_event is not None
                       and start <= t.first_event < end) for key in (heavy, light)}
    assert served[light] and low <= served[heavy] / served[light] <= high, served


@when('the key "{key}" sends {count:d} native tasks of the tiny model, one a second')
def trickle(context, key: str, count: int) -> None:
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = []
        for i in range(count):
            time.sleep(max(0.0, start + i - time.monotonic()))
            futures.append(pool.submit(_run, context, key))
        context.trickled = [future.result() for future in futures]


@then('every task the key "{key}" sent streamed to its end')
def trickle_ended(context, key: str) -> None:
    assert [t.end for t in context.trickled] == ["end"] * len(context.trickled), context.trickled


def _started_by(task: Sent, moment: float) -> bool:
    return task.first_event is not None and task.first_event <= moment


@then("each was served ahead of at least {part:d} in {whole:d} of the flood's tasks waiting when it was sent")
def served_ahead(context, part: int, whole: int) -> None:
    trickle_keys = {t.key for t in context.trickled}
    flood = [t for t in list(context.fair_tasks) if t.key not in trickle_keys]
    for task in context.trickled:
        waiting = [f for f in flood if f.sent < task.sent and not _started_by(f, task.sent)]
        behind = [f for f in waiting if not _started_by(f, task.first_event)]
        assert waiting and len(behind) * whole >= len(waiting) * part, \
            f"served ahead of {len(behind)} of the {len(waiting)} flood tasks waiting when it was sent"
