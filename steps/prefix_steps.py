"""Steps for prompt-prefix reuse: chat turns through the openai client, native tasks and the
worker's prompt-token metrics."""

from __future__ import annotations

import openai
from behave import given, then, when
from prometheus_client.parser import text_string_to_metric_families

from rbee.testing.cluster import wait_until
from rbee.testing.http_client import EventStream, request
from steps.common import first_token, hive_workers, open_stream, tiny_ref

FIRST_TURN = [
    {"role": "system", "content": "You are a storyteller who tells short stories about animals. " * 3},
    {"role": "user", "content": "Tell me about the little dog that saw a big cat."},
]
CONVERSATION = "The little dog saw a big cat and ran around the garden twice. " * 4
"""A native conversation's first prompt: several of the queen's 64-byte prefix blocks long."""
LONG_TOKENS = 4000
"""Enough for a task to hold its slot through a scenario when every token takes 20 ms."""


def _client(context) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{context.queen_url}/v1", api_key="x", max_retries=0)


@when("the openai client sends the first turn of a chat to the tiny model")
def first_chat_turn(context) -> None:
    context.turns = [_client(context).chat.completions.create(
        model=tiny_ref(context), messages=FIRST_TURN, max_tokens=16, seed=1)]


@when("the openai client sends the next turn of that chat with the answer appended")
def next_chat_turn(context) -> None:
    answer = "".join(c for c in context.turns[0].choices[0].message.content if c.isprintable())
    messages = [*FIRST_TURN, {"role": "assistant", "content": answer},
                {"role": "user", "content": "And what did the cat do then?"}]
    context.turns.append(_client(context).chat.completions.create(
        model=tiny_ref(context), messages=messages, max_tokens=16, seed=2))


def _cached(completion) -> int:
    return completion.usage.prompt_tokens_details.cached_tokens


@then("the next turn's usage says at least the first turn's prompt tokens less one were cached")
def next_turn_cached(context) -> None:
    first, following = context.turns
    assert following.usage.prompt_tokens > first.usage.prompt_tokens, (first.usage, following.usage)
    assert _cached(following) >= first.usage.prompt_tokens - 1, (first.usage, following.usage)


@then("the first turn's usage says at most {count:d} prompt token was cached")
def first_turn_cached(context, count: int) -> None:
    assert _cached(context.turns[0]) <= count, context.turns[0].usage


def _prompt_tokens_metric(context, source: str) -> float:
    [worker] = hive_workers(context)
    answer = request("GET", f"{worker['url']}/metrics")
    assert answer.status == 200, answer.status
    samples = [s for family in text_string_to_metric_families(answer.body.decode()) for s in family.samples
               if s.name == "rbee_worker_prompt_tokens_total" and s.labels.get("source") == source]
    assert len(samples) == 1, samples
    return samples[0].value


@then("the worker's reused prompt tokens are the cached tokens both turns reported")
def reused_metric(context) -> None:
    assert _prompt_tokens_metric(context, "reused") == sum(_cached(turn) for turn in context.turns)


@then("the worker's decoded prompt tokens are both turns' prompt tokens less the cached ones")
def decoded_metric(context) -> None:
    expected = sum(turn.usage.prompt_tokens - _cached(turn) for turn in context.turns)
    assert _prompt_tokens_metric(context, "decoded") == expected


# -- routing a conversation's turns through the queen --------------------------------------


def _task(context, prompt: str, max_tokens: int) -> EventStream:
    body = {"model": tiny_ref(context), "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.7,
            "seed": 3, "ignore_eos": True}
    stream = open_stream(context, f"{context.queen_url}/v2/tasks", body)
    assert stream.status == 200, stream.error_body()
    return stream


def _run(context, prompt: str) -> list[dict]:
    events = _task(context, prompt, 12).read_all()
    assert events[-1]["type"] == "end", events
    return events


@given("the queen runs {count:d} idle workers of the tiny model")
def idle_workers(context, count: int) -> None:
    """Long tasks fill the first worker's slots and queue until the queen adds replicas; then
    they are cancelled."""
    slots = 2
    holders = [_task(context, f"warm-up {index}", LONG_TOKENS) for index in range(slots * (count - 1) + 1)]
    assert wait_until(lambda: len(hive_workers(context)) == count, timeout=60), hive_workers(context)
    for holder in holders:
        first_token(holder)
    for holder in holders:
        holder.close()
    assert wait_until(lambda: [w["state"] for w in hive_workers(context)] == ["idle"] * count, timeout=30), \
        hive_workers(context)


def _worker_of(events: list[dict] | dict) -> str:
    started = events[0] if isinstance(events, list) else events
    assert started["type"] == "started", started
    return started["worker_id"]


@when("a native task runs the first turn of a conversation")
def first_native_turn(context) -> None:
    context.first_turn = _run(context, CONVERSATION)
    tokens = [event["token"] for event in context.first_turn if event["type"] == "token"]
    output = "".join(c for token in tokens for c in token if c.isprintable())
    context.next_prompt = CONVERSATION + output + " And then the cat climbed a tree."


@when("a long native task continuing that conversation holds a slot")
@when("{count:d} long native tasks continuing that conversation hold slots")
def long_tasks(context, count: int = 1) -> None:
    context.holders = []
    for index in range(count):
        stream = _task(context, f"{CONVERSATION} Meanwhile {index}", LONG_TOKENS)
        context.holders.append(stream.next_event())


@when("a native task runs the next turn of that conversation")
def next_native_turn(context) -> None:
    context.next_turn = _run(context, context.next_prompt)
    context.workers_during = {w["worker_id"]: w["state"] for w in hive_workers(context)}


@then("the long task and the next turn ran on the first turn's worker while the other worker was idle")
def same_worker(context) -> None:
    worker = _worker_of(context.first_turn)
    assert [_worker_of(started) for started in context.holders] == [worker]
    assert _worker_of(context.next_turn) == worker
    others = [state for worker_id, state in context.workers_during.items() if worker_id != worker]
    assert others == ["idle"], context.workers_during


@then("the next turn reused at least the first turn's prompt tokens less one")
def next_turn_reused(context) -> None:
    end = context.next_turn[-1]
    assert end.get("prompt_tokens_cached", 0) >= context.first_turn[0]["prompt_tokens"] - 1, end


@then("the long tasks ran on the first turn's worker and the next turn on the other worker")
def other_worker(context) -> None:
    worker = _worker_of(context.first_turn)
    assert [_worker_of(started) for started in context.holders] == [worker, worker]
    assert _worker_of(context.next_turn) != worker
