"""Steps driving the queen with the official openai Python client."""

from __future__ import annotations

import os
import signal

import openai
from behave import then, when

from rbee.testing.cluster import http_json
from steps.common import tiny_ref


def _client(context) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{context.queen_url}/v1", api_key="x", max_retries=0)


def _messages() -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say something."},
    ]


@when("the openai client asks for a chat completion of the tiny model with {n:d} max tokens")
def chat_whole(context, n: int) -> None:
    context.completion = _client(context).chat.completions.create(
        model=tiny_ref(context), messages=_messages(), max_tokens=n
    )


@when("the openai client streams a chat completion of the tiny model with {n:d} max tokens")
def chat_stream(context, n: int) -> None:
    stream = _client(context).chat.completions.create(
        model=tiny_ref(context), messages=_messages(), max_tokens=n, stream=True
    )
    context.chunks = list(stream)
    context.chat = True


@when("the openai client asks for a text completion of the tiny model with {n:d} max tokens")
def text_whole(context, n: int) -> None:
    context.completion = _client(context).completions.create(
        model=tiny_ref(context), prompt="Once upon a time", max_tokens=n
    )


@when("the openai client streams a text completion of the tiny model with {n:d} max tokens")
def text_stream(context, n: int) -> None:
    stream = _client(context).completions.create(
        model=tiny_ref(context), prompt="Once upon a time", max_tokens=n, stream=True
    )
    context.chunks = list(stream)
    context.chat = False


@when("the openai client lists the models")
def list_models(context) -> None:
    context.models = [model.id for model in _client(context).models.list()]


@when("the openai client asks for a chat completion with temperature {temperature:d}")
def chat_bad_temperature(context, temperature: int) -> None:
    try:
        _client(context).chat.completions.create(
            model=tiny_ref(context), messages=_messages(), temperature=temperature
        )
    except openai.APIStatusError as exc:
        context.error = exc
    else:
        raise AssertionError("the request was accepted")


@then("the completion has one choice with an assistant message")
def one_assistant_choice(context) -> None:
    choices = context.completion.choices
    assert len(choices) == 1
    assert choices[0].message.role == "assistant"
    assert isinstance(choices[0].message.content, str)
    assert choices[0].finish_reason in {"stop", "length"}


@then("the completion has one choice with text")
def one_text_choice(context) -> None:
    choices = context.completion.choices
    assert len(choices) == 1 and isinstance(choices[0].text, str) and choices[0].text
    assert choices[0].finish_reason in {"stop", "length"}


@then("the usage counts between {low:d} and {high:d} completion tokens")
def usage_counts(context, low: int, high: int) -> None:
    usage = context.completion.usage
    assert low <= usage.completion_tokens <= high, usage
    assert usage.prompt_tokens > 0 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@then("the first chunk names the assistant role")
def first_chunk_role(context) -> None:
    assert context.chunks[0].choices[0].delta.role == "assistant"


@then("the chunks carry text")
def chunks_text(context) -> None:
    if context.chat:
        texts = [c.choices[0].delta.content or "" for c in context.chunks if c.choices]
    else:
        texts = [c.choices[0].text for c in context.chunks if c.choices]
    assert len([t for t in texts if t]) >= 1, context.chunks


@then("the last chunk has a finish reason")
def last_chunk_finish(context) -> None:
    assert context.chunks[-1].choices[0].finish_reason in {"stop", "length"}


@then('the model list contains "{name}"')
def model_list_contains(context, name: str) -> None:
    assert name in context.models, context.models


@then('the openai client raised a bad request error with code "{code}"')
def bad_request(context, code: str) -> None:
    assert context.error.status_code == 400
    assert context.error.body["code"] == code, context.error.body


@when("the openai client streams a long completion and the worker is killed after the first chunk")
def stream_then_kill(context) -> None:
    stream = _client(context).completions.create(
        model=tiny_ref(context), prompt="Once", max_tokens=6000, stream=True,
        extra_body={"ignore_eos": True},
    )
    try:
        for index, _ in enumerate(stream):
            if index == 0:
                _, body = http_json(f"{context.hive_url}/v1/workers/list")
                os.kill(body["workers"][0]["pid"], signal.SIGKILL)
    except openai.APIError as exc:
        context.error = exc
    else:
        raise AssertionError("the stream ended without an error")


@then('the openai client raised an API error mentioning "{text}"')
def api_error_mentions(context, text: str) -> None:
    assert text in str(context.error) or text in str(getattr(context.error, "body", "")), context.error
