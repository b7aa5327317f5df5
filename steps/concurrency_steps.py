"""Steps that hit the daemons with many requests at once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from behave import then, when

from rbee.testing.cluster import http_json
from rbee.testing.http_client import EventStream, request
from steps.common import tiny_ref

ORDER_SLACK_S = 0.005
"""How far apart two streams' events may be seen in the wrong order by the client's threads: a
generation's span is shrunk by this much at each end before spans are overlapped."""


@dataclass(frozen=True)
class Outcome:
    """How one task ended, and when its client saw its first token and its end."""

    status: int
    last: str
    first_token_at: float = 0.0
    end_at: float = 0.0


def _run_task(url: str, body: dict) -> Outcome:
    stream = EventStream(url, body, timeout=120).open()
    try:
        if stream.status != 200:
            return Outcome(stream.status, stream.error_body()["error"]["code"])
        first = end = 0.0
        while (event := stream.next_event()) is not None:
            if event["type"] == "token" and not first:
                first = time.monotonic()
            end = time.monotonic()
        return Outcome(200, stream.events[-1]["type"] if stream.events else "nothing", first, end)
    finally:
        stream.close()


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans open at one instant."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans],
                   key=lambda edge: (edge[0], edge[1]))
    open_now = peak = 0
    for _, step in edges:
        open_now += step
        peak = max(peak, open_now)
    return peak


@when("{count:d} native tasks of {tokens:d} tokens are posted at the same time")
def parallel_tasks(context, count: int, tokens: int) -> None:
    body = {"model": tiny_ref(context), "prompt": "Hi", "max_tokens": tokens, "ignore_eos": True}
    url = f"{context.queen_url}/v2/tasks"
    with ThreadPoolExecutor(max_workers=count) as pool:
        context.outcomes = list(pool.map(lambda _: _run_task(url, body), range(count)))


@then("every task streamed to its end, those beyond the slots after waiting in the admission queue")
def every_task_ended(context) -> None:
    odd = [o for o in context.outcomes if (o.status, o.last) != (200, "end")]
    assert not odd, odd


@then("the worker never ran more than {slots:d} generations at once")
def never_oversubscribed(context, slots: int) -> None:
    """Counted by the clients: the spans from each stream's first token to its end, overlapped."""
    spans = [(o.first_token_at + ORDER_SLACK_S, o.end_at - ORDER_SLACK_S) for o in context.outcomes]
    peak = most_at_once([(start, end) for start, end in spans if start < end])
    print(f"    generations streaming at once, as the clients saw them: at most {peak}")
    assert 1 <= peak <= slots, peak


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
