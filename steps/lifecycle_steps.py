"""Steps that stop daemons and look for processes left behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from behave import given, then, when

from rbee.testing.cluster import alive, http_json, wait_until
from rbee.testing.http_client import EventStream, request
from steps.common import first_token, hive_workers, open_stream, slots_free_within, tiny_ref


@given("a worker for the tiny model has served a task through it")
def served_task(context) -> None:
    stream = EventStream(
        f"{context.queen_url}/v2/tasks", {"model": tiny_ref(context), "prompt": "Hi", "max_tokens": 4}
    ).open()
    context.streams.append(stream)
    events = stream.read_all()
    assert events[-1]["type"] == "end", events
    context.queen.descendants()


@when("I send {signame} to `rbee up`")
def send_signal(context, signame: str) -> None:
    context.tree = context.queen.descendants()
    assert context.tree, "rbee up has no child processes to check"
    context.signalled_at = time.monotonic()
    context.queen.send(getattr(signal, signame))


def _since_signal(context) -> float:
    return time.monotonic() - context.signalled_at


@then("`rbee up` exits with code 0 within {seconds:d} seconds of the signal")
def exits(context, seconds: int) -> None:
    code = context.queen.process.wait(timeout=max(0.0, seconds - _since_signal(context)))
    assert code == 0, (code, context.queen.log_tail())


@then("the stream ends within {seconds:d} seconds of the signal")
def stream_ends_after_signal(context, seconds: int) -> None:
    context.stream.read_to_end(max(0.0, seconds - _since_signal(context)))


@then("the stream is cut within {seconds:d} seconds of the signal, before its end")
def stream_cut_after_signal(context, seconds: int) -> None:
    events = context.stream.read_to_end(max(0.0, seconds - _since_signal(context)))
    assert not any(event.get("type") == "end" for event in events), events[-3:]
    assert not context.stream.saw_done, events[-3:]


@then("no process it started is still running")
def nothing_left(context) -> None:
    pids = context.queen.seen_descendants
    wait_until(lambda: not any(alive(pid) for pid in pids), 2.0)
    survivors = [pid for pid in pids if alive(pid)]
    assert not survivors, f"still running or unreaped after stop: {survivors}"




@then("the queen's worker reports all slots free within {seconds:d} second")
def queen_worker_free(context, seconds: int) -> None:
    workers = hive_workers(context)
    assert len(workers) == 1, workers
    slots_free_within(workers[0]["url"], workers[0]["slots"], seconds)


@when("the queen's worker is killed with SIGKILL")
def kill_queen_worker(context) -> None:
    workers = hive_workers(context)
    assert len(workers) == 1, workers
    os.kill(workers[0]["pid"], signal.SIGKILL)


@then('the stream ends with an error event with code "{code}"')
def stream_error_event(context, code: str) -> None:
    events = context.stream.read_all()
    assert events[-1]["type"] == "error" and events[-1]["code"] == code, events[-3:]
    assert context.stream.saw_done


@given("a file with the GGUF magic but garbage after it")
def corrupt_gguf(context) -> None:
    context.corrupt_model = context.workdir / "corrupt.gguf"
    context.corrupt_model.write_bytes(b"GGUF" + bytes(range(256)) * 64)


@given("a GGUF file whose header is intact but whose tensor data is cut off")
def truncated_gguf(context) -> None:
    data = Path(context.tiny_model).read_bytes()
    context.corrupt_model = context.workdir / "truncated.gguf"
    context.corrupt_model.write_bytes(data[: len(data) * 3 // 4])


@when("I post a native task for that file")
def post_corrupt_task(context) -> None:
    body = {"model": f"file://{context.corrupt_model}", "prompt": "Hi", "max_tokens": 4}
    context.answer = request("POST", f"{context.queen_url}/v2/tasks", body)


@given("a worker for the tiny model has served a task through the queen")
def served_through_queen(context) -> None:
    served_task(context)


@given('the file "{name}" exists in the scenario folder')
def flag_file(context, name: str) -> None:
    (context.workdir / name).write_text("armed")


@then("the queen's worker has restarted {count:d} time")
def queen_worker_restarted(context, count: int) -> None:
    workers = hive_workers(context)
    assert len(workers) == 1 and workers[0]["restarts"] == count, workers


@then("the queen counts no request in flight")
def nothing_in_flight(context) -> None:
    def idle() -> bool:
        status, body = http_json(f"{context.queen_url}/v2/workers/list")
        return status == 200 and all(w["in_flight"] == 0 for w in body["workers"])

    assert wait_until(idle, 3.0), http_json(f"{context.queen_url}/v2/workers/list")


@given("a native task of {n:d} tokens is streaming through the queen")
def task_of_n_tokens(context, n: int) -> None:
    body = {"model": tiny_ref(context), "prompt": "Once", "max_tokens": n, "ignore_eos": True}
    context.stream = open_stream(context, f"{context.queen_url}/v2/tasks", body)
    assert context.stream.status == 200, context.stream.error_body()
    first_token(context.stream)


@then('the streaming task ends with stop reason "{reason}" and {n:d} tokens')
def streaming_task_ends(context, reason: str, n: int) -> None:
    events = context.stream.read_all()
    assert events[-1]["type"] == "end", events[-3:]
    assert events[-1]["stop_reason"] == reason and events[-1]["tokens_out"] == n, events[-1]
    assert context.stream.saw_done


@when("I press Ctrl+C in the terminal of `rbee up`")
def ctrl_c_in_terminal(context) -> None:
    context.tree = context.queen.descendants()
    assert context.tree, "rbee up has no child processes to check"
    context.signalled_at = time.monotonic()
    os.killpg(context.queen.pid, signal.SIGINT)


@when("I ask the queen to shut down that worker")
def queen_shutdown_worker(context) -> None:
    context.workers = hive_workers(context)
    context.answer = request(
        "POST", f"{context.queen_url}/v2/workers/shutdown", {"worker_id": context.workers[0]["worker_id"]}
    )


@when('I ask the queen to shut down worker "{worker_id}"')
def queen_shutdown_unknown(context, worker_id: str) -> None:
    context.answer = request("POST", f"{context.queen_url}/v2/workers/shutdown", {"worker_id": worker_id})


@then("the answer is status {status:d}")
def answer_status(context, status: int) -> None:
    assert context.answer.status == status, (context.answer.status, context.answer.body)


@then("no process the queen started for that worker is still running")
def worker_process_gone(context) -> None:
    pids = [w["pid"] for w in context.workers]
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 5.0), pids
