"""Steps about the queen's backend policy: which backend a request runs on, and refusals."""

from __future__ import annotations

import json

import openai
import psutil
from behave import given, then, when

from rbee.testing.cluster import http_json
from rbee.testing.http_client import request
from steps.common import hive_workers, tiny_ref


@given('the queen\'s model_backends names "{backend}" for the tiny model')
def model_backend(context, backend: str) -> None:
    context.env["RBEE_QUEEN_MODEL_BACKENDS"] = json.dumps({tiny_ref(context): backend})


@when('I post a native task for the tiny model on backend "{backend}"')
def post_on_backend(context, backend: str) -> None:
    body = {"model": tiny_ref(context), "prompt": "Once", "max_tokens": 4, "backend": backend}
    context.answer = request("POST", f"{context.queen_url}/v2/tasks", body)


@when("the openai client asks for a chat completion of the tiny model and is refused")
def chat_refused(context) -> None:
    client = openai.OpenAI(base_url=f"{context.queen_url}/v1", api_key="x", max_retries=0)
    try:
        client.chat.completions.create(model=tiny_ref(context), max_tokens=4,
                                       messages=[{"role": "user", "content": "Say something."}])
    except openai.APIStatusError as exc:
        context.error = exc
    else:
        raise AssertionError("the request was served")


@then('the queen lists the worker of the tiny model on backend "{backend}" with no device')
def queen_lists_backend(context, backend: str) -> None:
    status, body = http_json(f"{context.queen_url}/v2/workers/list")
    assert status == 200, (status, body)
    workers = [w for w in body["workers"] if w["model"] == tiny_ref(context)]
    assert [(w["backend"], w["device"]) for w in workers] == [(backend, None)], workers


@then('the started event names backend "{backend}" and device null')
def started_names_backend(context, backend: str) -> None:
    first = context.stream.events[0]
    assert first["type"] == "started", first
    assert (first["backend"], first["device"]) == (backend, None), first


@then('the error message says "{text}"')
def error_message_says(context, text: str) -> None:
    error = json.loads(context.answer.body)["error"]
    assert text in error["message"], error


@then('the openai error message says "{text}"')
def openai_error_says(context, text: str) -> None:
    assert text in context.error.body["message"], context.error.body


@then("the queen's hive started no worker")
def no_worker_started(context) -> None:
    assert hive_workers(context) == []
    hives = psutil.Process(context.queen.pid).children()
    workers = [child.pid for hive in hives for child in hive.children(recursive=True)]
    assert workers == [], workers
