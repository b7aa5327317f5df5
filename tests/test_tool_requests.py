"""Chat bodies with tools, tool-call history and content parts: what the queen accepts, refuses
(400 naming the field) and hands the worker; and the OpenAI shape of an answer's tool calls."""

import json

import pytest

from rbee.common import wire
from rbee.common.errors import ApiError
from rbee.queen.api.openai_format import OpenAIResponder, parse_request
from rbee.queen.api.openai_requests import ChatCompletionRequest

TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
ASK = {"model": "default", "messages": [{"role": "user", "content": "Hi"}]}
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_time", "arguments": "{\"tz\": \"UTC\"}"}}


def _refused(body: dict) -> ApiError:
    with pytest.raises(ApiError) as caught:
        ChatCompletionRequest.parse(body)
    assert (caught.value.status, caught.value.code) == (400, "INVALID_REQUEST")
    return caught.value


@pytest.mark.parametrize(("changes", "field"), [
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
    ({"tools": [TOOL, TOOL]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools.function.name"),
    ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools.type"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"functions": [TOOL["function"]]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages"),
    ({"messages": [{"role": "user", "content": None}]}, "messages"),
    ({"messages": [{"role": "user", "content": "Hi", "tool_calls": [CALL]}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages.content"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.content"),
])
def test_a_bad_tool_or_message_field_is_refused_naming_the_field(changes, field):
    assert _refused({**ASK, **changes}).details == {"field": field}


def test_the_history_of_a_tool_call_and_its_result_reaches_the_worker():
    messages = [*ASK["messages"], {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "12:00"}]
    body = ChatCompletionRequest.parse({**ASK, "messages": messages, "tools": [TOOL]}).worker_body()
    assert body["messages"][1] == {"role": "assistant", "tool_calls": [CALL]}
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "12:00"}
    assert body["tools"] == [TOOL] and body["parallel_tool_calls"] is True


def test_a_message_authors_name_reaches_the_template():
    messages = [{"role": "user", "content": "Hi", "name": "ada"}]
    parsed = ChatCompletionRequest.parse({**ASK, "messages": messages})
    assert parsed.messages[0].template_message() == {"role": "user", "content": "Hi", "name": "ada"}


def test_developer_is_sent_as_system_and_text_parts_as_one_text():
    messages = [{"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    body = ChatCompletionRequest.parse({**ASK, "messages": messages}).worker_body()
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "a\nb"}]
    assert "tools" not in body


def test_a_tool_call_event_round_trips_over_the_wire():
    event = wire.ToolCall(1, "call_abc", "get_time", "{}")
    assert wire.parse_event(json.loads(event.encode())) == event


def _responder() -> OpenAIResponder:
    return OpenAIResponder(parse_request({**ASK, "tools": [TOOL]}, chat=True))


def _answer(text: str, stop_reason: str, calls: list[wire.ToolCall]) -> dict:
    responder = _responder()
    responder.add(wire.Token(text, 0))
    for call in calls:
        responder.add_tool_call(call)
    return responder.complete(wire.End(9, wire.StopReason(stop_reason), 1.0))


def test_an_answer_of_calls_only_has_null_content_and_finish_reason_tool_calls():
    answer = _answer("\n", "eos", [wire.ToolCall(0, "call_abc", "get_time", "{}")])
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "call_abc", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]


def test_calls_cut_short_by_max_tokens_finish_with_length():
    answer = _answer("", "max_tokens", [wire.ToolCall(0, "call_abc", "get_time", "{}")])
    assert answer["choices"][0]["finish_reason"] == "length"


def test_a_streamed_call_is_a_head_delta_with_empty_arguments_then_the_arguments():
    call = wire.ToolCall(0, "call_abc", "get_time", "{\"tz\": 1}")
    responder = _responder()
    head, rest = responder.tool_call_chunks(call)
    function = {"name": "get_time", "arguments": ""}
    first = {"index": 0, "id": "call_abc", "type": "function", "function": function}
    assert head["choices"][0]["delta"] == {"role": "assistant", "tool_calls": [first]}
    arguments = {"index": 0, "function": {"arguments": "{\"tz\": 1}"}}
    assert rest["choices"][0]["delta"] == {"tool_calls": [arguments]}
    [final] = responder.final_chunks(wire.End(2, wire.StopReason.EOS, 1.0))
    assert final["choices"][0]["finish_reason"] == "tool_calls"
