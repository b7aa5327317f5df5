"""Steps of features/415: idle workers evicted for a model that does not fit, through a real queen
and hive on a RAM budget."""

from __future__ import annotations

import json
import shutil

from behave import given, then, when

from rbee.testing.http_client import EventStream, request
from steps.common import hive_workers, tiny_ref
from steps.security_steps import _audit_records

BUDGET_MIB = 300
"""RBEE_RAM_BUDGET_MIB of the feature's background."""
MIB = 2**20


def _second_ref(context) -> str:
    return f"file://{context.second_model}"


def _task(model: str, max_tokens: int = 4, **extra) -> dict:
    return {"model": model, "prompt": "Hi", "max_tokens": max_tokens, **extra}


def _open(context, body: dict) -> EventStream:
    stream = EventStream(f"{context.queen_url}/v2/tasks", body, timeout=60).open()
    context.streams.append(stream)
    assert stream.status == 200, stream.raw_body()
    return stream


@given("a second model file, a copy of the tiny model")
def second_model(context) -> None:
    context.second_model = shutil.copy(context.tiny_model, context.workdir / "tiny-second.gguf")


@given("a task of the tiny model has been served through the queen")
def first_served(context) -> None:
    serve_first(context)


def serve_first(context, **extra) -> None:
    """A task of the tiny model through the queen (with `extra` fields), ended; its worker noted."""
    events = _open(context, _task(tiny_ref(context), **extra)).read_all()
    assert events[-1]["type"] == "end", events
    first = hive_workers(context)[0]
    context.first_worker, context.first_worker_pid = first["worker_id"], first["pid"]


@given("the hive's only worker serves the tiny model and its memory fits the budget once, not twice")
def premise(context) -> None:
    workers = hive_workers(context)
    assert [w["model"] for w in workers] == [tiny_ref(context)], workers
    need = workers[0]["memory_required_bytes"]
    assert need <= BUDGET_MIB * MIB < 2 * need, (need, BUDGET_MIB)


@when("a task of the second model streams through the queen")
def second_streams(context) -> None:
    stream_second(context)


def stream_second(context, **extra) -> None:
    """A task of the second model streamed through the queen (with `extra` fields) to its end."""
    context.events = _open(context, _task(_second_ref(context), **extra)).read_all()


@then('it ends with an "end" event')
def ends(context) -> None:
    assert context.events[-1]["type"] == "end", context.events[-3:]


@then("the hive lists only a worker of the second model")
def only_second(context) -> None:
    workers = hive_workers(context)
    assert [w["model"] for w in workers] == [_second_ref(context)], workers


@then("the hive lists only a worker of the tiny model, idle")
def only_first(context) -> None:
    workers = hive_workers(context)
    assert [(w["model"], w["state"], w["worker_id"]) for w in workers] == \
        [(tiny_ref(context), "idle", context.first_worker)], workers


@then('the hive\'s audit log has a "worker.evicted" record for the first worker, the second model '
      'and "{code}"')
def evicted_record(context, code: str) -> None:
    records = [r for r in _audit_records(context, "hive") if r["event"] == "worker.evicted"]
    assert len(records) == 1, records
    record = records[0]
    assert (record["worker_id"], record["for_model"], record["reason"]) == \
        (context.first_worker, _second_ref(context), code), record


@then('the hive\'s audit log has no "worker.evicted" record')
def no_eviction_record(context) -> None:
    records = [r for r in _audit_records(context, "hive") if r["event"] == "worker.evicted"]
    assert not records, records


@given("a long task of the tiny model is streaming through the queen")
def long_first(context) -> None:
    stream = _open(context, _task(tiny_ref(context), 3000, ignore_eos=True))
    assert stream.next_event() is not None
    context.long_stream = stream


@when("I post a task of the second model to the queen")
def post_second(context) -> None:
    context.answer = request("POST", f"{context.queen_url}/v2/tasks", _task(_second_ref(context)))


@then('the long task of the tiny model still ends with an "end" event')
def long_ends(context) -> None:
    events = context.long_stream.read_all()
    assert events[-1]["type"] == "end" and events[-1]["stop_reason"] == "max_tokens", \
        json.dumps(events[-3:])
