"""Steps that hit the daemons with many requests at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from behave import then, when

from rbee.testing.cluster import http_json
from rbee.testing.http_client import EventStream, request
from steps.common import tiny_ref


def _run_task(url: str, body: dict) -> tuple[int, str]:
    stream = EventStream(url, body, timeout=120).open()
    try:
        if stream.status != 200:
            return stream.status, stream.error_body()["error"]["code"]
        events = stream.read_all()
        return 200, events[-1]["type"] if events else "nothing"
    finally:
        stream.close()


@when("{count:d} native tasks of {tokens:d} tokens are posted at the same time")
def parallel_tasks(context, count: int, tokens: int) -> None:
    body = {"model": tiny_ref(context), "prompt": "Hi", "max_tokens": tokens, "ignore_eos": True}
    url = f"{context.queen_url}/v2/tasks"
    with ThreadPoolExecutor(max_workers=count) as pool:
        context.outcomes = list(pool.map(lambda _: _run_task(url, body), range(count)))


@then("every task streamed to its end, those beyond the slots after waiting in the admission queue")
def every_task_ended(context) -> None:
    odd = [o for o in context.outcomes if o != (200, "end")]
    assert not odd, odd


@then("the worker never ran more than {slots:d} generations at once")
def never_oversubscribed(context, slots: int) -> None:
    workers = http_json(f"{context.hive_url}/v1/workers/list")[1]["workers"]
    assert len(workers) == 1, workers
    health = http_json(f"{workers[0]['url']}/health")[1]
    assert 1 <= health["peak_busy_slots"] <= slots, health


@when("{hives:d} hives send heartbeats with {workers:d} workers each at the same time")
def parallel_heartbeats(context, hives: int, workers: int) -> None:
    def beat(n: int) -> int:
        hive_url = f"http://127.0.{n // 250}.{n % 250 + 1}:9200"
        body = {
            "hive_url": hive_url,
            "version": "0.1.0",
            "workers": [
                {"worker_id": f"h{n}-w{i}", "model": "m", "url": f"{hive_url}/w{i}", "slots": 1,
                 "state": "idle"}
                for i in range(workers)
            ],
        }
        return request("POST", f"{context.queen_url}/v2/heartbeat", body).status

    with ThreadPoolExecutor(max_workers=hives) as pool:
        statuses = list(pool.map(beat, range(hives)))
    assert statuses == [200] * hives, statuses


@then("the queen lists {hives:d} hives and {workers:d} workers")
def queen_lists(context, hives: int, workers: int) -> None:
    body = http_json(f"{context.queen_url}/v2/workers/list")[1]
    assert len(body["hives"]) == hives and len(body["workers"]) == workers, (
        len(body["hives"]), len(body["workers"])
    )
