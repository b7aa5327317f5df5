"""Steps for tools, chat templates and context limits through the openai client and LangChain."""

import asyncio
import json
from typing import Literal

import openai
from behave import given, then, when
from pydantic import BaseModel

from rbee.testing.chat_templates import TEMPLATES
from rbee.testing.tiny_model import build_tiny_gguf
from steps.cluster_steps import start_queen
from steps.common import matches_schema, tiny_ref

CITIES = ["Paris", "Oslo"]
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": CITIES}, "days": {"type": "integer"}},
    "required": ["city"],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather of a city",
                                      "parameters": WEATHER_SCHEMA}},
]
ASK = [{"role": "user", "content": "What is the weather in Oslo?"}]
SAY = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say something."}]


class Weather(BaseModel):
    """The weather of a city (LangChain's structured output)."""

    city: Literal["Paris", "Oslo"]
    days: int


def _client(context) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{context.queen_url}/v1", api_key="x", max_retries=0)


def _model(context) -> str:
    return getattr(context, "model_ref", None) or tiny_ref(context)


def _refused(context, call) -> None:
    try:
        call()
    except openai.APIStatusError as exc:
        context.error = exc
    else:
        raise AssertionError("the request was accepted")


@given("the tiny model with the {name} chat template")
def tiny_with_template(context, name: str) -> None:
    path = build_tiny_gguf(context.workdir / f"tiny-{name}.gguf", context_length=8192,
                           chat_template=TEMPLATES[name])
    context.model_ref = f"file://{path}"


@given("a queen on free loopback ports whose workers have a context of {tokens:d} tokens")
def queen_with_context(context, tokens: int) -> None:
    start_queen(context, "--worker-ctx-size", str(tokens))


@when('the openai client asks for a chat completion whose tool choice is "{choice}"')
def ask_with_tools(context, choice: str) -> None:
    context.completion = _client(context).chat.completions.create(
        model=_model(context), messages=ASK, tools=TOOLS, tool_choice=choice)


@when("the openai client asks the tiny model without a template for a chat completion whose tool choice "
      'is "{choice}"')
def ask_untemplated_with_tools(context, choice: str) -> None:
    context.completion = _client(context).chat.completions.create(
        model=tiny_ref(context), messages=ASK, tools=TOOLS, tool_choice=choice)


@when('the async openai client asks for a chat completion whose tool choice is "{choice}"')
def ask_async_with_tools(context, choice: str) -> None:
    async def ask():
        client = openai.AsyncOpenAI(base_url=f"{context.queen_url}/v1", api_key="x", max_retries=0)
        async with client:
            return await client.chat.completions.create(
                model=_model(context), messages=ASK, tools=TOOLS, tool_choice=choice)

    context.completion = asyncio.run(ask())


@when('the openai client streams a chat completion whose tool choice names "{name}"')
def stream_named_call(context, name: str) -> None:
    stream = _client(context).chat.completions.create(
        model=_model(context), messages=ASK, tools=TOOLS, stream=True,
        tool_choice={"type": "function", "function": {"name": name}})
    context.chunks = list(stream)


@when("the openai client sends a conversation with an assistant tool call and the tool's result")
def tool_result_conversation(context) -> None:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": "Oslo"})}}
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "12 degrees and rain"}]
    context.completion = _client(context).chat.completions.create(
        model=_model(context), messages=messages, tools=TOOLS, max_tokens=12)


@when("the openai client sends the same chat once with a developer and once with a system message")
def developer_and_system(context) -> None:
    client = _client(context)
    context.completions = [
        client.chat.completions.create(
            model=_model(context), max_tokens=2,
            messages=[{"role": role, "content": "You are terse."}, {"role": "user", "content": "Hi"}])
        for role in ("developer", "system")
    ]


@when("the openai client sends a user message as two text parts and as their joined text")
def parts_and_joined(context) -> None:
    client = _client(context)
    parts = [{"type": "text", "text": "Say"}, {"type": "text", "text": "something."}]
    context.completions = [
        client.chat.completions.create(model=_model(context), max_tokens=2,
                                       messages=[{"role": "user", "content": content}])
        for content in (parts, "Say\nsomething.")
    ]


@when("the openai client sends a user message with an image part")
def image_part(context) -> None:
    content = [{"type": "text", "text": "What is this?"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    _refused(context, lambda: _client(context).chat.completions.create(
        model=_model(context), max_tokens=2, messages=[{"role": "user", "content": content}]))


@when("the openai client sends two user messages in a row")
def two_user_messages(context) -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hello?"}]
    _refused(context, lambda: _client(context).chat.completions.create(
        model=_model(context), max_tokens=2, messages=messages))


@when("the openai client asks for a chat completion without max_tokens that ignores the end of text")
def without_max_tokens(context) -> None:
    context.completion = _client(context).chat.completions.create(
        model=_model(context), messages=SAY, extra_body={"ignore_eos": True})


@when("the openai client sends a prompt of {words:d} words")
def long_prompt(context, words: int) -> None:
    text = " ".join(["the little dog saw a big cat"] * (words // 7))
    _refused(context, lambda: _client(context).chat.completions.create(
        model=_model(context), max_tokens=2, messages=[{"role": "user", "content": text}]))


def _langchain(context):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=f"{context.queen_url}/v1", api_key="x", model=_model(context), max_retries=0)


@when('LangChain\'s ChatOpenAI with "{name}" bound and forced is invoked')
def langchain_bound(context, name: str) -> None:
    context.lc_message = _langchain(context).bind_tools(TOOLS, tool_choice=name).invoke(ASK[0]["content"])


@when("LangChain's ChatOpenAI asks for a Weather through with_structured_output")
def langchain_structured(context) -> None:
    structured = _langchain(context).with_structured_output(Weather, method="function_calling")
    context.lc_result = structured.invoke(ASK[0]["content"])


def _matches_schema(arguments: str) -> dict:
    parsed = json.loads(arguments)
    assert matches_schema(WEATHER_SCHEMA, parsed), parsed
    return parsed


@then('the answer calls "{name}" with arguments that match its schema')
def answer_calls(context, name: str) -> None:
    message = context.completion.choices[0].message
    assert message.tool_calls, message
    for call in message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_"), call
        assert call.function.name == name, call
        _matches_schema(call.function.arguments)


@then('the finish reason is "{reason}"')
def finish_reason(context, reason: str) -> None:
    assert context.completion.choices[0].finish_reason == reason, context.completion


def _call_deltas(context) -> list:
    return [call for chunk in context.chunks if chunk.choices
            for call in (chunk.choices[0].delta.tool_calls or ())]


@then("the first delta of each call carries its id, type and name with empty arguments")
def first_deltas(context) -> None:
    seen: set[int] = set()
    for delta in _call_deltas(context):
        if delta.index not in seen:
            seen.add(delta.index)
            assert delta.id and delta.type == "function" and delta.function.name, delta
            assert delta.function.arguments == "", delta
    assert seen, context.chunks


@then('the streamed deltas reassemble to a call of "{name}" with arguments that match its schema')
def reassembled(context, name: str) -> None:
    calls: dict[int, dict] = {}
    for delta in _call_deltas(context):
        call = calls.setdefault(delta.index, {"id": delta.id, "name": delta.function.name, "arguments": ""})
        call["arguments"] += delta.function.arguments or ""
    assert len(calls) == 1, calls
    assert calls[0]["name"] == name and calls[0]["id"].startswith("call_"), calls
    _matches_schema(calls[0]["arguments"])


@then('the stream\'s finish reason is "{reason}"')
def stream_finish(context, reason: str) -> None:
    reasons = [chunk.choices[0].finish_reason for chunk in context.chunks if chunk.choices]
    assert reasons[-1] == reason, reasons


@then("the answer calls no tool and has text")
def no_tool(context) -> None:
    choice = context.completion.choices[0]
    assert not choice.message.tool_calls and choice.finish_reason in {"stop", "length"}, choice
    assert isinstance(choice.message.content, str)


@then("both answers count the same prompt tokens")
def same_prompt_tokens(context) -> None:
    counts = [completion.usage.prompt_tokens for completion in context.completions]
    assert counts[0] == counts[1] > 0, counts


@then('the openai error names the field "{field}"')
def error_names_field(context, field: str) -> None:
    assert context.error.body["details"]["field"] == field, context.error.body
    assert f"'{field}'" in context.error.body["message"], context.error.body


@then('the openai error message contains "{text}"')
def error_message_contains(context, text: str) -> None:
    assert text in context.error.body["message"], context.error.body


@then("the usage counts more than {low:d} completion tokens and fills the {ctx:d}-token context")
def fills_context(context, low: int, ctx: int) -> None:
    usage = context.completion.usage
    assert usage.completion_tokens > low and usage.total_tokens == ctx, usage


@then("the error details count more prompt tokens than the {ctx:d} of the context")
def too_long_counts(context, ctx: int) -> None:
    details = context.error.body["details"]
    assert details["context_tokens"] == ctx and details["prompt_tokens"] > ctx, details


@then('LangChain\'s message calls "{name}" with arguments that match its schema')
def langchain_calls(context, name: str) -> None:
    calls = context.lc_message.tool_calls
    assert calls and all(call["name"] == name for call in calls), context.lc_message
    for call in calls:
        assert matches_schema(WEATHER_SCHEMA, call["args"]), call


@then("LangChain gave a Weather whose city is one the schema allows")
def langchain_weather(context) -> None:
    assert isinstance(context.lc_result, Weather) and context.lc_result.city in CITIES, context.lc_result
