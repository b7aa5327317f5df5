"""Steps talking to a worker directly."""

from __future__ import annotations

import time

from behave import given, then, when

from rbee.testing.cluster import http_json, worker_daemon
from rbee.testing.http_client import EventStream, request
from steps.common import LONG_TASK_TOKENS, first_token, open_stream, slots_free_within, started


@then("the worker's readiness check answers 200")
def worker_ready(context) -> None:
    status, body = http_json(f"{context.worker_url}/v1/ready")
    assert status == 200 and body["ready"] is True, (status, body)


@given("a worker serving the tiny model with 1 slot that is still loading it")
def a_loading_worker(context) -> None:
    daemon = worker_daemon(context.workdir, context.tiny_model, 1, ["--ctx-size", "8192"])
    context.worker = started(context, daemon)
    context.worker_url = context.worker.base_url
    status, body = http_json(f"{context.worker_url}/v1/ready")
    assert status == 503 and body["ready"] is False, (status, body)


@then('the worker\'s loading progress stream shows it loading, then ends with "{final}"')
def loading_progress(context, final: str) -> None:
    stream = open_stream(context, f"{context.worker_url}/v1/loading/progress", None, "GET")
    events = stream.read_all()
    loading = [event for event in events if event["type"] == "loading"]
    assert loading and loading[0]["state"] == "loading" and loading[0]["progress"] < 1.0, events
    shares = [event["progress"] for event in loading]
    assert shares == sorted(shares), shares
    assert events[-1]["type"] == final, events
    assert stream.saw_done


@given("a long generation is streaming from the worker")
def long_generation(context) -> None:
    body = {"task_id": "long-task", "prompt": "Once", "max_tokens": LONG_TASK_TOKENS, "ignore_eos": True}
    context.stream = open_stream(context, f"{context.worker_url}/v1/inference", body)
    assert context.stream.status == 200, context.stream.error_body()
    first_token(context.stream)


@when("I post an inference to the worker")
def post_inference(context) -> None:
    context.answer = request(
        "POST", f"{context.worker_url}/v1/inference", {"prompt": "Hi", "max_tokens": 4}
    )


@then("the answer has a Retry-After header")
def retry_after(context) -> None:
    assert int(context.answer.headers["Retry-After"]) >= 1, context.answer.headers


@when("the client disconnects")
def client_disconnects(context) -> None:
    context.stream.close()


@then("the worker reports {free:d} free slot of {total:d} within {seconds:d} second")
def worker_slots_free(context, free: int, total: int, seconds: int) -> None:
    body = slots_free_within(context.worker_url, free, seconds)
    assert body["slots_total"] == total, body


@then("the worker serves a new request afterwards")
def serves_again(context) -> None:
    stream = EventStream(f"{context.worker_url}/v1/inference", {"prompt": "Hi", "max_tokens": 4})
    context.streams.append(stream.open())
    events = stream.read_all()
    assert stream.status == 200 and events[-1]["type"] == "end", events


@when("I cancel that task at the worker")
def cancel_at_worker(context) -> None:
    answer = request("DELETE", f"{context.worker_url}/v1/inference/long-task")
    assert answer.status == 204, answer


@then('the stream ends with stop reason "{reason}"')
def stream_stop_reason(context, reason: str) -> None:
    events = context.stream.read_all()
    assert events[-1]["type"] == "end" and events[-1]["stop_reason"] == reason, events[-1]
    assert events[-1]["tokens_out"] < LONG_TASK_TOKENS


@then("{count:d} health checks in a row each answer within {limit_ms:d} ms")
def health_fast(context, count: int, limit_ms: int) -> None:
    slowest = 0.0
    for _ in range(count):
        started = time.monotonic()
        status, body = http_json(f"{context.worker_url}/health")
        slowest = max(slowest, time.monotonic() - started)
        assert status == 200 and body["state"] == "busy", body
    print(f"slowest of {count} health checks: {slowest * 1000:.1f} ms")
    assert slowest * 1000 < limit_ms, f"slowest health check took {slowest * 1000:.0f} ms"
    assert not context.stream.done, "the generation ended before the checks; make it longer"
