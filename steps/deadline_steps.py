"""Steps about request deadlines."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from behave import then, when

from rbee.testing.http_client import Answer, EventStream
from steps.common import LONG_TASK_TOKENS, tiny_ref


def _epoch_ms(offset_s: float) -> str:
    return str(int((time.time() + offset_s) * 1000))


def _rfc3339(offset_s: float) -> str:
    return datetime.fromtimestamp(time.time() + offset_s, UTC).isoformat()


def _post(context, url: str, body: dict, deadline: str) -> None:
    context.sent_deadline = deadline
    context.request_started = time.monotonic()
    stream = EventStream(url, body, headers_out={"X-Request-Deadline": deadline}).open()
    context.streams.append(stream)
    if stream.status == 200:
        stream.read_all()
        context.stream = stream
    else:
        context.answer = Answer(stream.status, stream.headers, stream.raw_body())
    context.stream_ended = time.monotonic()


def _task(context, max_tokens: int = 4) -> dict:
    return {"model": tiny_ref(context), "prompt": "Hi", "max_tokens": max_tokens, "ignore_eos": True}


@when("I post a native task with a deadline {seconds:d} seconds in the past")
def past_deadline(context, seconds: int) -> None:
    _post(context, f"{context.queen_url}/v2/tasks", _task(context), _epoch_ms(-seconds))


@when("I post an inference to the worker with a deadline {seconds:d} seconds in the past")
def worker_past_deadline(context, seconds: int) -> None:
    body = {"prompt": "Hi", "max_tokens": 4}
    _post(context, f"{context.worker_url}/v1/inference", body, _rfc3339(-seconds))


@when('I post a native task with the deadline header "{value}"')
def malformed_deadline(context, value: str) -> None:
    _post(context, f"{context.queen_url}/v2/tasks", _task(context), value)


@when("I post a native task with a deadline {seconds:d} seconds ahead as epoch milliseconds")
def deadline_epoch(context, seconds: int) -> None:
    _post(context, f"{context.queen_url}/v2/tasks", _task(context), _epoch_ms(seconds))


@when("I post a native task with a deadline {seconds:d} seconds ahead as RFC 3339")
def deadline_rfc3339(context, seconds: int) -> None:
    _post(context, f"{context.queen_url}/v2/tasks", _task(context), _rfc3339(seconds))


@when("I post a long native task with a deadline {seconds:d} seconds ahead")
def long_task_deadline(context, seconds: int) -> None:
    body = _task(context, LONG_TASK_TOKENS)
    _post(context, f"{context.queen_url}/v2/tasks", body, _epoch_ms(seconds))


def _started(context) -> dict:
    started = context.stream.events[0]
    assert started["type"] == "started", context.stream.events[:2]
    return started


@then("the worker saw exactly the deadline header I sent")
def worker_saw_deadline(context) -> None:
    assert _started(context)["deadline"] == context.sent_deadline, _started(context)


@then("the worker saw a deadline about {seconds:d} seconds ahead")
def worker_saw_default(context, seconds: int) -> None:
    seen = datetime.fromisoformat(_started(context)["deadline"]).timestamp()
    assert abs(seen - (time.time() + seconds)) < 10, _started(context)


@then("the stream ended within {seconds:d} seconds of the request")
def ended_within(context, seconds: int) -> None:
    took = context.stream_ended - context.request_started
    assert took < seconds, took
