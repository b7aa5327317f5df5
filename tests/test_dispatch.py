"""The Dispatcher on its own: relaying a worker's native events, retrying a worker that dies before
its first token, cancelling at the worker, deadlines, draining and the audit trail. The worker
and its hive are real aiohttp servers on loopback (tests/fake_peers.py) whose answers each test
scripts; the Dispatcher and Placement use their real HTTP clients."""

import asyncio
import json
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from fake_peers import (
    FakeHive,
    FakeWorker,
    NodeHandle,
    dies_after,
    fails_with,
    holds,
    refuses,
    sends,
    streams,
    writes,
)

from rbee.common import deadlines
from rbee.common.audit import prompt_digest
from rbee.common.errors import ApiError
from rbee.common.metrics import DaemonMetrics
from rbee.common.native_stream import TokenRun
from rbee.common.tunables import Timings
from rbee.queen.nodes.hive_directory import HiveDirectory
from rbee.queen.nodes.node_registry import NodeRegistry
from rbee.queen.routing.dispatch import Dispatcher, Task
from rbee.queen.routing.hive_registry import HiveRegistry
from rbee.queen.routing.placement import Placement
from rbee.queen.routing.task_meter import TaskMeter
from rbee.queen.routing.waiting import NOTE_INTERVAL_S, WaitNote
from rbee.queen.routing.worker_registry import WorkerRegistry

MODEL = "tiny"
PROMPT = "Once upon a time"
TOKEN = "Bearer queen-to-worker"
CORRELATION_ID = "7f1c2a9e-3b4d-4e5f-8a6b-1c2d3e4f5a6b"
WAIT_S = 10.0


def wire(event: Any) -> dict[str, Any]:
    """An event as its JSON object (whether the Dispatcher yields dicts or typed wire events; a
    run of one token as that token's)."""
    if isinstance(event, TokenRun):
        (event,) = event.events()
    return dict(event.to_wire()) if hasattr(event, "to_wire") else dict(event)


def expanded(items: list[Any]) -> list[dict[str, Any]]:
    """The native events of what the Dispatcher yielded, each token of a run on its own, notes
    left out."""
    events: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, TokenRun):
            events.extend(token.to_wire() for token in item.events())
        elif not isinstance(item, WaitNote):
            events.append(wire(item))
    return events


def deadline_in(seconds: float) -> deadlines.Deadline:
    return deadlines.parse(str(int((time.time() + seconds) * 1000)))


@dataclass
class Queen:
    dispatcher: Dispatcher
    placement: Placement
    worker: FakeWorker
    audit: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    metrics: DaemonMetrics = field(default_factory=lambda: DaemonMetrics("queen"))

    def task(self, deadline_s: float = 60.0, **body: Any) -> Task:
        worker_body = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0.0, **body}
        return Task(MODEL, Dispatcher.new_task_id(), worker_body, CORRELATION_ID, deadline_in(deadline_s))

    async def events(self, task: Task) -> list[dict[str, Any]]:
        """The task's native events (its wait notes left out)."""
        return expanded([event async for event in self.dispatcher.run(task)])

    def audited(self, name: str) -> list[dict[str, Any]]:
        return [fields for event, fields in self.audit if event == name]


@asynccontextmanager
async def queen(tmp_path, *plays, slots: int = 4, backend: str = "cpu", device: int | None = None):
    """A Dispatcher whose placement finds one idle worker (answering with `plays`) on localhost,
    running on `backend` (GPU `device`)."""
    worker = await FakeWorker(*plays).start()
    hive = await FakeHive(worker.url).start()
    registry = NodeRegistry(tmp_path / "nodes.db")
    try:
        hive.add_worker(MODEL, "idle", slots=slots, backend=backend, device=device)
        async with aiohttp.ClientSession() as session:
            local = NodeHandle("localhost", hive.client(session))
            timings = Timings()
            directory = HiveDirectory(local, registry, lambda spec: None, stop_grace_s=1.0)
            placement = Placement(directory, HiveRegistry(timings), WorkerRegistry(), slots, timings)
            records: list[tuple[str, dict[str, Any]]] = []
            metrics = DaemonMetrics("queen")
            dispatcher = Dispatcher(placement, session, lambda: {"Authorization": TOKEN},
                                    lambda event, **fields: records.append((event, fields)),
                                    meter=TaskMeter(metrics))
            yield Queen(dispatcher, placement, worker, records, metrics)
    finally:
        registry.close()
        await hive.close()
        await worker.close()


async def raised(coroutine) -> ApiError:
    with pytest.raises(ApiError) as err:
        await coroutine
    return err.value


def test_a_task_streams_the_workers_events_in_order(tmp_path):
    async def scenario():
        async with queen(tmp_path, streams("Once", " upon", " a")) as q:
            return await q.events(q.task())

    events = asyncio.run(scenario())
    assert [e["type"] for e in events] == ["started", "token", "token", "token", "end"]
    assert [e["token"] for e in events if e["type"] == "token"] == ["Once", " upon", " a"]
    assert (events[-1]["tokens_out"], events[-1]["stop_reason"]) == (3, "max_tokens")


def test_the_started_event_carries_the_task_id_and_names_the_node(tmp_path):
    async def scenario():
        async with queen(tmp_path, streams("Once")) as q:
            task = q.task()
            return task.task_id, (await q.events(task))[0]

    task_id, started = asyncio.run(scenario())
    assert started["type"] == "started"
    assert started["task_id"] == task_id
    assert started["node"] == "localhost"


@pytest.mark.parametrize(("backend", "device"), [("cpu", None), ("cuda", 1)])
def test_the_started_event_names_the_backend_and_device_of_the_worker(tmp_path, backend, device):
    async def scenario():
        async with queen(tmp_path, streams("Once"), backend=backend, device=device) as q:
            return (await q.events(q.task()))[0]

    started = asyncio.run(scenario())
    assert (started["model"], started["backend"], started["device"]) == (MODEL, backend, device)


def test_the_worker_gets_the_body_with_the_task_id_and_the_correlation_deadline_and_auth_headers(tmp_path):
    async def scenario():
        async with queen(tmp_path, streams("Once")) as q:
            task = q.task(max_tokens=5, seed=7)
            await q.events(task)
            return task, q.worker.requests

    task, requests = asyncio.run(scenario())
    (body, headers), = requests
    assert body == {"prompt": PROMPT, "max_tokens": 5, "temperature": 0.0, "seed": 7, "task_id": task.task_id}
    assert headers["X-Correlation-ID"] == CORRELATION_ID
    assert headers["X-Request-Deadline"] == task.deadline.header
    assert headers["Authorization"] == TOKEN


def test_a_worker_that_dies_before_its_first_token_is_replaced_without_the_client_noticing(tmp_path):
    async def scenario():
        async with queen(tmp_path, dies_after(), streams("Once", " upon")) as q:
            return await q.events(q.task()), len(q.worker.requests)

    events, attempts = asyncio.run(scenario())
    assert [e["type"] for e in events] == ["started", "token", "token", "end"]
    assert attempts == 2


def test_a_worker_that_dies_after_tokens_were_relayed_ends_the_stream_with_worker_crashed(tmp_path):
    async def scenario():
        async with queen(tmp_path, dies_after("Once", " upon"), streams("never", "sent")) as q:
            return await q.events(q.task()), len(q.worker.requests)

    events, attempts = asyncio.run(scenario())
    assert [e["type"] for e in events] == ["started", "token", "token", "error"]
    assert events[-1]["code"] == "WORKER_CRASHED"
    assert attempts == 1


def test_workers_dying_before_a_token_on_every_attempt_fail_the_task_with_503_worker_crashed(tmp_path):
    async def scenario():
        async with queen(tmp_path, dies_after()) as q:
            err = await raised(q.events(q.task()))
            return err, len(q.worker.requests), q.audited("task.failed")

    err, attempts, failed = asyncio.run(scenario())
    assert (err.status, err.code) == (503, "WORKER_CRASHED")
    assert attempts == 3
    assert [f["code"] for f in failed] == ["WORKER_CRASHED"]


def test_a_worker_sending_an_event_the_queen_does_not_know_is_replaced_like_a_dead_one(tmp_path):
    async def scenario():
        async with queen(tmp_path, sends({"type": "bogus"}), streams("Once")) as q:
            return await q.events(q.task()), len(q.worker.requests)

    events, attempts = asyncio.run(scenario())
    assert [e["type"] for e in events] == ["started", "token", "end"]
    assert attempts == 2


def test_a_worker_refusing_the_request_fails_the_task_with_its_status_and_code_without_retrying(tmp_path):
    async def scenario():
        async with queen(tmp_path, refuses(400, "PROMPT_TOO_LONG")) as q:
            return await raised(q.events(q.task())), len(q.worker.requests)

    err, attempts = asyncio.run(scenario())
    assert (err.status, err.code) == (400, "PROMPT_TOO_LONG")
    assert attempts == 1


def test_a_worker_whose_slots_are_still_busy_is_asked_again_before_the_task_fails(tmp_path):
    async def scenario():
        async with queen(tmp_path, refuses(503, "ALL_SLOTS_BUSY"), streams("Once")) as q:
            return await q.events(q.task()), len(q.worker.requests)

    events, attempts = asyncio.run(scenario())
    assert [e["type"] for e in events] == ["started", "token", "end"]
    assert attempts == 2


def test_an_error_event_from_the_worker_is_relayed_and_audited_as_failed(tmp_path):
    error = {"type": "error", "code": "GENERATION_FAILED", "message": "generation failed"}

    async def scenario():
        async with queen(tmp_path, fails_with(error, "Once")) as q:
            return await q.events(q.task()), q.audited("task.failed")

    events, failed = asyncio.run(scenario())
    assert events[-1] == error
    assert failed[0]["code"] == "GENERATION_FAILED"


def test_closing_the_stream_early_cancels_the_task_at_the_worker(tmp_path):
    async def scenario():
        async with queen(tmp_path, holds("Once")) as q:
            task = q.task()
            events = q.dispatcher.run(task)
            read = [wire(await anext(events)), wire(await anext(events))]
            await events.aclose()
            await asyncio.wait_for(q.worker.cancel_of(task.task_id).wait(), WAIT_S)
            return read, q.worker.cancelled, task.task_id, q.audited("task.cancelled")

    read, cancelled, task_id, audited = asyncio.run(scenario())
    assert [e["type"] for e in read] == ["started", "token"]
    assert cancelled == [task_id]
    assert audited == [{"task_id": task_id, "reason": "the client went away", "prompt_tokens": 3}]


def test_cancelling_a_running_task_stops_it_at_its_worker(tmp_path):
    async def scenario():
        async with queen(tmp_path, holds("Once")) as q:
            task = q.task()
            events = q.dispatcher.run(task)
            read = [wire(await anext(events)), wire(await anext(events))]
            running = q.dispatcher.running_count
            await q.dispatcher.cancel(task.task_id)
            read += expanded([event async for event in events])
            return read, running, q.dispatcher.running_count, q.worker.cancelled, task.task_id

    read, running, after, cancelled, task_id = asyncio.run(scenario())
    assert cancelled == [task_id]
    assert read[-1]["type"] == "end" and read[-1]["stop_reason"] == "cancelled"
    assert (running, after) == (1, 0)


def test_cancelling_an_unknown_task_is_404_task_not_found(tmp_path):
    async def scenario():
        async with queen(tmp_path, streams("Once")) as q:
            return await raised(q.dispatcher.cancel("no-such-task"))

    err = asyncio.run(scenario())
    assert (err.status, err.code) == (404, "TASK_NOT_FOUND")


def test_cancelling_a_finished_task_is_accepted_and_sends_nothing_to_the_worker(tmp_path):
    async def scenario():
        async with queen(tmp_path, streams("Once")) as q:
            task = q.task()
            await q.events(task)
            await q.dispatcher.cancel(task.task_id)
            return q.worker.cancelled

    assert asyncio.run(scenario()) == []


def test_a_deadline_that_passes_before_the_first_token_is_504_and_cancels_at_the_worker(tmp_path):
    async def scenario():
        async with queen(tmp_path, holds()) as q:
            task = q.task(deadline_s=1.5)
            err = await raised(q.events(task))
            await asyncio.wait_for(q.worker.cancel_of(task.task_id).wait(), WAIT_S)
            return err

    err = asyncio.run(scenario())
    assert (err.status, err.code) == (504, "DEADLINE_EXCEEDED")


def test_a_deadline_that_passes_mid_stream_ends_it_with_a_deadline_exceeded_error(tmp_path):
    async def scenario():
        async with queen(tmp_path, holds("Once")) as q:
            task = q.task(deadline_s=2.0)
            events = await q.events(task)
            await asyncio.wait_for(q.worker.cancel_of(task.task_id).wait(), WAIT_S)
            return events

    events = asyncio.run(scenario())
    assert [e["type"] for e in events] == ["started", "token", "error"]
    assert events[-1]["code"] == "DEADLINE_EXCEEDED"


def test_a_deadline_that_passes_while_waiting_for_a_free_slot_is_504(tmp_path):
    async def scenario():
        async with queen(tmp_path, streams("Once"), slots=1) as q:
            async with q.placement.worker_for(MODEL):
                return await raised(q.events(q.task(deadline_s=0.5))), q.worker.requests

    err, requests = asyncio.run(scenario())
    assert (err.status, err.code) == (504, "DEADLINE_EXCEEDED")
    assert requests == []


def test_a_task_waiting_for_a_busy_slot_gets_queued_notes_and_then_the_time_it_waited(tmp_path):
    async def scenario():
        async with queen(tmp_path, streams("Once"), slots=1) as q:
            items: list[Any] = []
            async with q.placement.worker_for(MODEL):
                run = q.dispatcher.run(q.task())
                items.append(await asyncio.wait_for(anext(run), WAIT_S))
                await asyncio.sleep(3 * NOTE_INTERVAL_S)
            items.extend([item async for item in run])
            return items

    items = asyncio.run(scenario())
    notes = [item for item in items if isinstance(item, WaitNote)]
    assert notes and notes[0].text == "queued position=1", items
    waits = [note.waited_ms for note in notes]
    assert waits == sorted(waits) and waits[0] > 0, notes
    started = next(wire(item) for item in items if not isinstance(item, WaitNote))
    assert started["type"] == "started" and started["queue_wait_ms"] >= notes[-1].waited_ms, items


def test_once_tasks_have_finished_a_queued_task_is_told_an_estimated_wait(tmp_path):
    async def scenario():
        async with queen(tmp_path, streams("Once"), streams("Once"), streams("Once"), slots=1) as q:
            await q.events(q.task())
            await q.events(q.task())
            async with q.placement.worker_for(MODEL):
                run = q.dispatcher.run(q.task())
                note = await asyncio.wait_for(anext(run), WAIT_S)
            rest = [item async for item in run]
            return note, rest

    note, rest = asyncio.run(scenario())
    assert isinstance(note, WaitNote) and re.fullmatch(r"queued position=1 eta_s=[1-9]\d*", note.text), note
    assert wire(rest[-1])["type"] == "end", rest


def test_a_task_that_finds_a_free_slot_gets_no_note(tmp_path):
    async def scenario():
        async with queen(tmp_path, streams("Once")) as q:
            return [item async for item in q.dispatcher.run(q.task())]

    items = asyncio.run(scenario())
    assert not [item for item in items if isinstance(item, WaitNote)], items
    assert wire(items[0])["queue_wait_ms"] >= 0


def test_a_draining_dispatcher_refuses_new_tasks_with_503_draining(tmp_path):
    async def scenario():
        async with queen(tmp_path, streams("Once")) as q:
            await asyncio.wait_for(q.dispatcher.drain(30.0), WAIT_S)
            return q.dispatcher.draining, await raised(q.events(q.task())), q.worker.requests

    draining, err, requests = asyncio.run(scenario())
    assert draining
    assert (err.status, err.code) == (503, "DRAINING")
    assert "Retry-After" in err.headers
    assert requests == []


def test_draining_waits_for_running_tasks_to_finish(tmp_path):
    async def scenario():
        async with queen(tmp_path, holds("Once")) as q:
            task = q.task()
            events = q.dispatcher.run(task)
            await anext(events)
            drain = asyncio.create_task(q.dispatcher.drain(30.0))
            await asyncio.wait({drain}, timeout=0.2)
            waited = not drain.done()
            await q.dispatcher.cancel(task.task_id)
            rest = expanded([event async for event in events])
            await asyncio.wait_for(drain, WAIT_S)
            return waited, rest[-1], q.dispatcher.running_count

    waited, last, running = asyncio.run(scenario())
    assert waited
    assert last["type"] == "end"
    assert running == 0


def test_the_audit_trail_records_the_prompt_hash_never_the_prompt(tmp_path):
    async def scenario():
        async with queen(tmp_path, streams("Once", " upon")) as q:
            task = q.task()
            await q.events(task)
            return task.task_id, q.audit

    task_id, audit = asyncio.run(scenario())
    assert [event for event, _ in audit] == ["task.submitted", "task.completed"]
    submitted, completed = (fields for _, fields in audit)
    assert submitted["task_id"] == task_id
    assert submitted["correlation_id"] == CORRELATION_ID
    assert submitted["prompt_sha256"] == prompt_digest(PROMPT)
    assert PROMPT not in repr(audit)
    assert completed == {"task_id": task_id, "tokens_out": 2, "stop_reason": "max_tokens", "prompt_tokens": 3}


def compact(event: dict[str, Any]) -> bytes:
    """An event as a worker writes it (`sse.send_data`)."""
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def test_events_a_worker_writes_together_or_cut_across_writes_are_relayed_in_order_whole(tmp_path):
    started = compact({"type": "started", "task_id": "TASK_ID", "worker_id": "w-1", "slot": 0,
                       "prompt_tokens": 3})
    tokens = [compact({"type": "token", "token": text, "index": i}) for i, text in enumerate(["A", "B", "C"])]
    end = compact({"type": "end", "tokens_out": 3, "stop_reason": "eos", "duration_ms": 1.0})
    cut = len(end) // 2
    play = writes(started + tokens[0] + tokens[1], tokens[2] + end[:cut], end[cut:] + b"data: [DONE]\n\n")

    async def scenario():
        async with queen(tmp_path, play) as q:
            task = replace(q.task(), parse_tokens=False)
            items = [item async for item in q.dispatcher.run(task)]
            counted = q.metrics.registry.get_sample_value("rbee_queen_tokens_generated_total")
            return items, q.audited("task.completed"), counted

    items, completed, counted = asyncio.run(scenario())
    runs = [item for item in items if isinstance(item, TokenRun)]
    assert b"".join(run.frames for run in runs) == b"".join(tokens)
    assert [e["type"] for e in expanded(items)] == ["started", "token", "token", "token", "end"]
    assert [e["token"] for e in expanded(items) if e["type"] == "token"] == ["A", "B", "C"]
    assert [(c["tokens_out"], c["stop_reason"]) for c in completed] == [(3, "eos")]
    assert counted == 3
