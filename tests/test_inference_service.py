"""The worker's InferenceService on its own, over the real batched engine and the tiny GGUF:
admitting requests onto slots, streaming native events, cancelling, deadlines, and freeing a
slot only once the engine has finished with it."""

import asyncio
import json
import re
import time
from concurrent.futures import Future

import pytest

from rbee.common import deadlines
from rbee.common.errors import ApiError
from rbee.testing.tiny_model import build_tiny_gguf
from rbee.worker.batch_engine import BatchEngine
from rbee.worker.faults import Faults
from rbee.worker.generation import Job, LoadSpec, Outcome
from rbee.worker.inference import InferenceService
from rbee.worker.slots import SlotPool

SLOTS = 2
CTX = 512
SLOW_MS = 10
"""Per-token delay of the slow engine: a long generation is surely still running when the test
acts on it (4000 tokens take 40 s; every test ends it long before)."""
LONG = 4000
WAIT_S = 30.0
PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return str(build_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context_length=8192))


@pytest.fixture(scope="module")
def fast(model_path):
    engine = asyncio.run(BatchEngine.load(LoadSpec(model_path, SLOTS, CTX, 1), Faults(), lambda _: None))
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def slow(model_path):
    engine = asyncio.run(BatchEngine.load(LoadSpec(model_path, SLOTS, 8192, 1), Faults(slow_ms=SLOW_MS),
                                          lambda _: None))
    yield engine
    engine.shutdown()


def as_json(event) -> dict:
    """An event as its JSON object (a typed wire event or a plain dict)."""
    return dict(event.to_wire()) if hasattr(event, "to_wire") else dict(event)


def service(engine, slots: int = SLOTS) -> InferenceService:
    return InferenceService("w-test", SlotPool.of_size(slots), engine)


def body(**fields) -> dict:
    return {"prompt": PROMPT, "max_tokens": 16, "ignore_eos": True, **fields}


async def events_of(svc: InferenceService, task) -> list[dict]:
    async def read() -> list[dict]:
        return [as_json(event) async for event in svc.stream(task)]

    return await asyncio.wait_for(read(), WAIT_S)


async def first_token(stream) -> list[dict]:
    """Read a stream up to and including its first token event."""
    read = []
    async for event in stream:
        read.append(as_json(event))
        if read[-1]["type"] == "token":
            return read
    raise AssertionError(f"no token before the stream ended: {read}")


def refusal(svc: InferenceService, request: dict) -> ApiError:
    with pytest.raises(ApiError) as err:
        svc.admit(request)
    return err.value


def text_of(events: list[dict]) -> str:
    return "".join(e["token"] for e in events if e["type"] == "token")


def test_a_request_streams_started_then_its_tokens_then_end(fast):
    async def scenario():
        svc = service(fast)
        return await events_of(svc, svc.admit(body(max_tokens=20)))

    events = asyncio.run(scenario())
    assert events[0]["type"] == "started"
    assert {e["type"] for e in events[1:-1]} == {"token"}
    indices = [e["index"] for e in events[1:-1]]
    assert indices == sorted(set(indices)) and indices[-1] < 20
    end = events[-1]
    assert (end["type"], end["tokens_out"], end["stop_reason"]) == ("end", 20, "max_tokens")
    assert end["duration_ms"] >= 0 and end["tokens_per_second"] >= 0


def test_the_started_event_names_the_task_the_worker_the_slot_and_the_prompt_size(fast):
    async def scenario():
        svc = service(fast)
        return (await events_of(svc, svc.admit(body(task_id="task-1", max_tokens=1))))[0]

    assert asyncio.run(scenario()) == {
        "type": "started", "task_id": "task-1", "worker_id": "w-test", "slot": 0,
        "prompt_tokens": len(fast.tokenize(PROMPT, False)), "deadline": None,
    }


def test_a_request_without_a_task_id_gets_a_fresh_one(fast):
    async def scenario():
        svc = service(fast)
        first = (await events_of(svc, svc.admit(body(max_tokens=1))))[0]["task_id"]
        second = (await events_of(svc, svc.admit(body(max_tokens=1))))[0]["task_id"]
        return first, second

    first, second = asyncio.run(scenario())
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


def test_the_started_event_carries_the_deadline_the_request_came_with(fast):
    deadline = deadlines.parse(str(int((time.time() + 60) * 1000)))

    async def scenario():
        svc = service(fast)
        return (await events_of(svc, svc.admit(body(max_tokens=1), deadline)))[0]["deadline"]

    assert asyncio.run(scenario()) == deadline.header


def test_a_slot_is_held_until_the_generation_has_finished(fast):
    async def scenario():
        svc = service(fast)
        task = svc.admit(body(max_tokens=30))
        during = (svc.pool.free, svc.active_count)
        await events_of(svc, task)
        return during, (svc.pool.free, svc.active_count)

    during, after = asyncio.run(scenario())
    assert during == (SLOTS - 1, 1)
    assert after == (SLOTS, 0)


def test_a_request_when_every_slot_is_busy_is_refused_with_503_all_slots_busy(slow):
    async def scenario():
        svc = service(slow, slots=1)
        task = svc.admit(body(max_tokens=LONG))
        err = refusal(svc, body())
        svc.cancel(task.task_id)
        await events_of(svc, task)
        return err

    err = asyncio.run(scenario())
    assert (err.status, err.code) == (503, "ALL_SLOTS_BUSY")
    assert "Retry-After" in err.headers


def test_a_request_reusing_the_id_of_a_running_task_is_refused_with_409(slow):
    async def scenario():
        svc = service(slow)
        task = svc.admit(body(task_id="same", max_tokens=LONG))
        err = refusal(svc, body(task_id="same"))
        free = svc.pool.free
        svc.cancel(task.task_id)
        await events_of(svc, task)
        return err, free

    err, free = asyncio.run(scenario())
    assert (err.status, err.code) == (409, "TASK_EXISTS")
    assert free == SLOTS - 1


@pytest.mark.parametrize("bad", [
    {"max_tokens": 0},
    {"temperature": 9.0},
    {"prompt": None},
    {"prompt": "control\x07character"},
    {"task_id": "../../etc/passwd"},
    {"stop": ["a", "b", "c", "d", "e"]},
], ids=["max_tokens", "temperature", "no-prompt", "control-char", "task-id", "stop"])
def test_an_invalid_request_is_refused_with_400_and_takes_no_slot(fast, bad):
    async def scenario():
        svc = service(fast)
        return refusal(svc, body(**bad)), svc.pool.free, svc.active_count

    err, free, active = asyncio.run(scenario())
    assert err.status == 400
    assert (free, active) == (SLOTS, 0)


def test_a_prompt_longer_than_the_context_is_refused_with_prompt_too_long_and_takes_no_slot(fast):
    prompt = "the little dog saw a big cat " * 120

    async def scenario():
        svc = service(fast)
        return refusal(svc, body(prompt=prompt)), svc.pool.free

    err, free = asyncio.run(scenario())
    assert (err.status, err.code) == (400, "PROMPT_TOO_LONG")
    assert err.details == {"prompt_tokens": len(fast.tokenize(prompt, False)), "context_tokens": CTX}
    assert free == SLOTS


def test_cancelling_a_running_task_ends_it_with_stop_reason_cancelled(slow):
    async def scenario():
        svc = service(slow)
        task = svc.admit(body(max_tokens=LONG))
        stream = svc.stream(task)
        read = await asyncio.wait_for(first_token(stream), WAIT_S)
        accepted = svc.cancel(task.task_id)
        read += await asyncio.wait_for(_rest(stream), WAIT_S)
        return accepted, read, svc.pool.free

    accepted, events, free = asyncio.run(scenario())
    assert accepted
    assert events[-1]["type"] == "end" and events[-1]["stop_reason"] == "cancelled"
    assert events[-1]["tokens_out"] < LONG
    assert free == SLOTS


async def _rest(stream) -> list[dict]:
    return [as_json(event) async for event in stream]


def test_cancelling_an_unknown_task_is_refused(fast):
    assert service(fast).cancel("no-such-task") is False


def test_cancel_all_stops_every_running_task(slow):
    async def scenario():
        svc = service(slow)
        tasks = [svc.admit(body(max_tokens=LONG)) for _ in range(SLOTS)]
        svc.cancel_all()
        return [(await events_of(svc, task))[-1]["stop_reason"] for task in tasks], svc.pool.free

    reasons, free = asyncio.run(scenario())
    assert reasons == ["cancelled"] * SLOTS
    assert free == SLOTS


def test_a_deadline_that_passes_mid_generation_ends_the_stream_with_deadline_exceeded(slow):
    async def scenario():
        svc = service(slow)
        task = svc.admit(body(max_tokens=LONG), deadlines.parse(str(int((time.time() + 0.5) * 1000))))
        return await events_of(svc, task), svc.pool.free

    events, free = asyncio.run(scenario())
    assert (events[-1]["type"], events[-1]["code"]) == ("error", "DEADLINE_EXCEEDED")
    assert free == SLOTS


def test_the_same_seed_gives_the_same_text(fast):
    async def scenario():
        svc = service(fast)
        runs = []
        for seed in (5, 5, 6):
            runs.append(text_of(await events_of(svc, svc.admit(body(max_tokens=40, temperature=1.0,
                                                                      seed=seed)))))
        return runs

    first, again, other = asyncio.run(scenario())
    assert first == again
    assert first != other


def test_a_stop_sequence_ends_the_generation_before_it_with_stop_reason_stop(fast):
    async def scenario():
        svc = service(fast)
        params = {"max_tokens": 120, "temperature": 1.0, "seed": 3}
        text = text_of(await events_of(svc, svc.admit(body(**params))))
        words = re.findall(r"[A-Za-z]{3,}", text[len(text) // 2:])
        assert words, f"no word to stop at in {text!r}"
        stop = words[0]
        stopped = await events_of(svc, svc.admit(body(stop=[stop], **params)))
        return text, stop, stopped

    text, stop, stopped = asyncio.run(scenario())
    assert stopped[-1]["stop_reason"] == "stop"
    assert text_of(stopped) == text[: text.find(stop)]


def test_a_chat_request_is_rendered_into_a_prompt_and_answered(fast):
    messages = [{"role": "user", "content": "hello"}]

    async def scenario():
        svc = service(fast)
        return await events_of(svc, svc.admit({"messages": messages, "max_tokens": 4, "ignore_eos": True}))

    events = asyncio.run(scenario())
    assert events[0]["prompt_tokens"] == len(fast.tokenize("User: hello\nAssistant:", False))
    assert events[-1]["type"] == "end"


def test_tokens_generated_and_peak_active_count_follow_the_requests(slow):
    async def scenario():
        svc = service(slow)
        tasks = [svc.admit(body(max_tokens=5)) for _ in range(SLOTS)]
        ends = [(await events_of(svc, task))[-1] for task in tasks]
        return ends, svc.tokens_generated, svc.peak_active, svc.active_count

    ends, generated, peak, active = asyncio.run(scenario())
    assert [e["tokens_out"] for e in ends] == [5] * SLOTS
    assert generated == 5 * SLOTS
    assert (peak, active) == (SLOTS, 0)


def test_a_service_is_stalled_only_while_requests_run_without_a_token(slow):
    async def scenario():
        svc = service(slow)
        idle_stalled = svc.stalled(time.monotonic() + 3600, 1.0)
        task = svc.admit(body(max_tokens=LONG))
        stream = svc.stream(task)
        await asyncio.wait_for(first_token(stream), WAIT_S)
        silent_long = svc.stalled(time.monotonic() + 3600, 1.0)
        progressing = svc.stalled(time.monotonic(), 3600)
        svc.cancel(task.task_id)
        await asyncio.wait_for(_rest(stream), WAIT_S)
        return idle_stalled, silent_long, progressing

    assert asyncio.run(scenario()) == (False, True, False)


class FailingEngine:
    """The real engine for everything but generating: every generation fails."""

    def __init__(self, real: BatchEngine) -> None:
        self._real = real
        self.context_tokens = real.context_tokens
        self.vocab_size = real.vocab_size
        self.chat_template = real.chat_template

    def tokenize(self, text: str, parse_special: bool, add_bos: bool = True) -> list[int]:
        return self._real.tokenize(text, parse_special, add_bos)

    def special_texts(self) -> tuple[str, str]:
        return self._real.special_texts()

    def slot_for(self, prompt_tokens: list[int], free: list[int]) -> int:
        return self._real.slot_for(prompt_tokens, free)

    def start(self, slot: int, job: Job) -> Future[Outcome]:
        failed: Future[Outcome] = Future()
        failed.set_exception(RuntimeError("llama_decode returned -1"))
        return failed

    def start_all(self, starts: list[tuple[int, Job]]) -> list[Future[Outcome]]:
        return [self.start(slot, job) for slot, job in starts]

    def shutdown(self) -> None:
        pass


def test_a_generation_that_fails_in_the_engine_ends_with_generation_failed_and_frees_its_slot(fast):
    async def scenario():
        svc = service(FailingEngine(fast))
        return await events_of(svc, svc.admit(body())), svc.pool.free

    events, free = asyncio.run(scenario())
    assert [e["type"] for e in events] == ["started", "error"]
    assert events[-1]["code"] == "GENERATION_FAILED"
    assert "llama_decode" not in events[-1]["message"]
    assert free == SLOTS


def test_n_choices_take_a_slot_each_and_end_with_every_choices_stop_reason(fast):
    async def scenario():
        svc = service(fast)
        task = svc.admit(body(n=2, max_tokens=6, temperature=1.0, seed=3))
        free_while_running = svc.pool.free
        events = await events_of(svc, task)
        await asyncio.sleep(0)
        return free_while_running, events, svc.pool.free

    free_while_running, events, free_after = asyncio.run(scenario())
    assert (free_while_running, free_after) == (0, SLOTS)
    tokens = [e for e in events if e["type"] == "token"]
    assert sorted({e.get("choice", 0) for e in tokens}) == [0, 1]
    first, second = ([e for e in tokens if e.get("choice", 0) == choice] for choice in (0, 1))
    assert text_of(first) != text_of(second)
    end = events[-1]
    assert (end["tokens_out"], end["stop_reasons"]) == (12, ["max_tokens", "max_tokens"])


def test_more_choices_than_the_worker_has_slots_are_refused_naming_n(fast):
    error = refusal(service(fast), body(n=SLOTS + 1))
    assert (error.status, error.code, error.details["field"]) == (400, "TOO_MANY_CHOICES", "n")


def test_a_logit_bias_token_outside_the_vocabulary_is_refused(fast):
    error = refusal(service(fast), body(logit_bias={str(fast.vocab_size): 5}))
    assert (error.status, error.details["field"]) == (400, "logit_bias")


def test_a_schema_with_a_keyword_the_grammar_cannot_enforce_is_refused(fast):
    schema = {"type": "object", "properties": {"age": {"type": "integer", "maximum": 120}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}
    error = refusal(service(fast), body(response_format=fmt))
    assert (error.status, error.details["field"]) == (400, "response_format") and "maximum" in error.message


def test_a_json_object_request_streams_a_json_object(fast):
    async def scenario():
        svc = service(fast)
        request = body(response_format={"type": "json_object"}, max_tokens=300, temperature=0)
        return await events_of(svc, svc.admit(request))

    events = asyncio.run(scenario())
    assert isinstance(json.loads(text_of(events)), dict) and events[-1]["stop_reason"] == "eos"


def test_log_probabilities_ride_on_the_token_events_only_when_asked(fast):
    async def scenario():
        svc = service(fast)
        asked = await events_of(svc, svc.admit(body(n_probs=2, max_tokens=3)))
        plain = await events_of(svc, svc.admit(body(max_tokens=3)))
        return asked, plain

    asked, plain = asyncio.run(scenario())
    assert [len(e["logprobs"]["top_logprobs"]) for e in asked if e["type"] == "token"] == [2, 2, 2]
    assert all("logprobs" not in e for e in plain)
