"""Steps for the queen's native task API."""

from __future__ import annotations

import json
import threading

from behave import given, then, when

from rbee.testing.cluster import http_json, wait_until
from rbee.testing.http_client import EventStream, request
from steps.common import LONG_TASK_TOKENS, first_token, open_stream, queen_workers_list, tiny_ref


def _post_task(context, prompt: str, max_tokens: int, seed: int | None = None) -> None:
    body = {"model": tiny_ref(context), "prompt": prompt, "max_tokens": max_tokens}
    if seed is not None:
        body["seed"] = seed
    stream = EventStream(f"{context.queen_url}/v2/tasks", body).open()
    context.streams.append(stream)
    stream.read_all()
    context.stream = stream
    context.tasks = [*getattr(context, "tasks", []), stream]


@when('I post a native task for the tiny model with prompt "{prompt}" and {n:d} max tokens')
def post_task(context, prompt: str, n: int) -> None:
    _post_task(context, prompt, n)


@when('I post a native task for the tiny model with prompt "{prompt}" and {n:d} max tokens and seed {seed:d}')
def post_seeded_task(context, prompt: str, n: int, seed: int) -> None:
    _post_task(context, prompt, n, seed)


@when("I post the native task body {body}")
def post_raw_body(context, body: str) -> None:
    context.answer = request("POST", f"{context.queen_url}/v2/tasks", raw=body.encode())


@when("another native task for the tiny model is posted")
def post_task_answer(context) -> None:
    body = {"model": tiny_ref(context), "prompt": "Hi", "max_tokens": 4}
    context.answer = request("POST", f"{context.queen_url}/v2/tasks", body)


@then("the answer is an event stream with status 200")
def event_stream_ok(context) -> None:
    assert context.stream.status == 200, context.stream.status
    assert context.stream.headers["Content-Type"].startswith("text/event-stream")


@then('the first event is "started" and names the task')
def first_started(context) -> None:
    first = context.stream.events[0]
    assert first["type"] == "started", first
    assert first["task_id"] and first["worker_id"], first


@then("token events follow with increasing indexes")
def increasing_tokens(context) -> None:
    tokens = [e for e in context.stream.events if e["type"] == "token"]
    assert tokens, context.stream.events
    indexes = [e["index"] for e in tokens]
    assert indexes == sorted(set(indexes)), indexes
    assert all(isinstance(e["token"], str) and e["token"] for e in tokens)


@then('the last event is "end" with between {low:d} and {high:d} tokens out')
def last_end(context, low: int, high: int) -> None:
    last = context.stream.events[-1]
    assert last["type"] == "end", last
    assert low <= last["tokens_out"] <= high, last
    assert last["stop_reason"] in {"max_tokens", "eos"}, last
    assert last["duration_ms"] >= 0


@then("the stream closes with [DONE]")
def closes_with_done(context) -> None:
    assert context.stream.saw_done


@then('the hive lists {count:d} worker for the tiny model in state "{state}"')
def hive_lists_workers(context, count: int, state: str) -> None:
    workers: list = []

    def check() -> bool:
        nonlocal workers
        status, body = http_json(f"{context.hive_url}/v1/workers/list")
        assert status == 200, status
        workers = [w for w in body["workers"] if w["model"] == tiny_ref(context)]
        return len(workers) == count and all(w["state"] == state for w in workers)

    assert wait_until(check, 3.0), workers


@then("both tasks ran on the same worker")
def same_worker(context) -> None:
    first, second = (s.events[0]["worker_id"] for s in context.tasks[-2:])
    assert first == second, (first, second)


@then("both tasks produced the same text")
def same_text(context) -> None:
    texts = ["".join(e["token"] for e in s.events if e["type"] == "token") for s in context.tasks[-2:]]
    assert texts[0] == texts[1] and texts[0], texts


@then('the answer is status {status:d} with error code "{code}" and a correlation id')
def structured_error(context, status: int, code: str) -> None:
    answer = context.answer
    assert answer.status == status, (answer.status, answer.body)
    error = json.loads(answer.body)["error"]
    assert error["code"] == code, error
    assert error["message"] and "Traceback" not in error["message"], error
    assert len(error["correlation_id"]) == 36, error
    assert answer.headers.get("X-Correlation-ID") == error["correlation_id"]


@then("the queen still answers its health check")
def queen_healthy(context) -> None:
    assert http_json(f"{context.queen_url}/health")[0] == 200


@given("a long native task is streaming through the queen")
def long_task(context) -> None:
    body = {"model": tiny_ref(context), "prompt": "Once", "max_tokens": LONG_TASK_TOKENS, "ignore_eos": True}
    context.stream = open_stream(context, f"{context.queen_url}/v2/tasks", body)
    assert context.stream.status == 200, context.stream.error_body()
    first_token(context.stream)


@when("I cancel that task at the queen")
def cancel_at_queen(context) -> None:
    task_id = context.stream.events[0]["task_id"]
    context.answer = request("DELETE", f"{context.queen_url}/v2/tasks/{task_id}")


@when('I cancel task "{task_id}" at the queen')
def cancel_unknown(context, task_id: str) -> None:
    context.answer = request("DELETE", f"{context.queen_url}/v2/tasks/{task_id}")


@given("a long OpenAI chat stream is being read through the queen")
def long_openai_stream(context) -> None:
    body = {
        "model": tiny_ref(context),
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": LONG_TASK_TOKENS,
        "ignore_eos": True,
        "stream": True,
    }
    context.stream = open_stream(context, f"{context.queen_url}/v1/chat/completions", body)
    assert context.stream.status == 200
    assert context.stream.next_event() is not None


@when("another native task for the tiny model is sent without waiting for its answer")
def send_waiting_task(context) -> None:
    body = {"model": tiny_ref(context), "prompt": "Hi", "max_tokens": 4}
    context.waiting = EventStream(f"{context.queen_url}/v2/tasks", body, timeout=30)
    context.streams.append(context.waiting)
    context.waiting_opened = threading.Thread(target=lambda: context.waiting.open().next_event(), daemon=True)
    context.waiting_opened.start()


@then("that task has no answer yet after 1 second")
def no_answer_yet(context) -> None:
    """No event yet (a waiting stream may be open, sending only `: queued` comments)."""
    context.waiting_opened.join(1.0)
    assert context.waiting_opened.is_alive() and context.waiting.events == [], context.waiting.events


def _queue(context) -> dict:
    return queen_workers_list(context)["queue"]


@then("the queen's admission queue holds 1 request for the tiny model")
def one_waiting(context) -> None:
    assert _queue(context) == {"waiting": 1, "by_model": {tiny_ref(context): 1}}, _queue(context)


@when("I cancel that first task at the queen")
def cancel_first(context) -> None:
    cancel_at_queen(context)
    assert context.answer.status == 204, context.answer.status


@then("the waiting task streams to its end within {seconds:d} seconds")
def waiting_streams(context, seconds: int) -> None:
    context.waiting_opened.join(seconds)
    assert context.waiting.status == 200, context.waiting.status
    events = context.waiting.read_all()
    assert events[-1]["type"] == "end" and events[-1]["tokens_out"] == 4, events[-3:]


@then("the queen's admission queue is empty")
def queue_empty(context) -> None:
    assert _queue(context) == {"waiting": 0, "by_model": {}}, _queue(context)
