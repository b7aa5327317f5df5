"""The OpenAI routes' bodies and answers for the sampling fields, log probabilities and `n`:
what the worker is asked for, and how native events become OpenAI's chunks and objects."""

import pytest

from rbee.common import wire
from rbee.common.errors import ApiError
from rbee.common.wire import Candidate, StopReason, TokenLogprobs
from rbee.queen.api.openai_format import OpenAIResponder, parse_request

CHAT = {"model": "default", "messages": [{"role": "user", "content": "Hi"}]}
TEXT = {"model": "default", "prompt": "Once"}


def _refused(body: dict, chat: bool) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_request(body, chat)
    return caught.value


def test_chat_logprobs_ask_the_worker_for_top_logprobs_alternatives():
    assert parse_request({**CHAT, "logprobs": True, "top_logprobs": 4}, chat=True).worker_body["n_probs"] == 4
    assert parse_request({**CHAT, "logprobs": True}, chat=True).worker_body["n_probs"] == 0
    assert parse_request(CHAT, chat=True).worker_body["n_probs"] is None


def test_top_logprobs_without_logprobs_is_refused_naming_it():
    error = _refused({**CHAT, "top_logprobs": 2}, chat=True)
    assert (error.status, error.details["field"]) == (400, "top_logprobs")


def test_completion_logprobs_are_bounded_by_openais_limit_of_five():
    assert parse_request({**TEXT, "logprobs": 5}, chat=False).worker_body["n_probs"] == 5
    assert _refused({**TEXT, "logprobs": 6}, chat=False).details["field"] == "logprobs"


def test_llama_servers_n_probs_is_not_how_the_openai_routes_ask():
    assert parse_request({**TEXT, "n_probs": 3}, chat=False).worker_body["n_probs"] is None


@pytest.mark.parametrize(("field", "value"), [("echo", True), ("best_of", 3), ("n", 0), ("n", 17)])
def test_completion_fields_rbee_does_not_honour_are_refused(field, value):
    assert _refused({**TEXT, field: value}, chat=False).details["field"] == field


def test_the_worker_gets_n_and_every_sampling_field():
    body = parse_request({**CHAT, "n": 3, "top_k": 5, "min_p": 0.1, "repeat_penalty": 1.2, "seed": -1,
                          "presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"7": -100},
                          "response_format": {"type": "json_object"}}, chat=True).worker_body
    assert {k: body[k] for k in ("n", "top_k", "min_p", "repeat_penalty", "seed", "presence_penalty",
                                 "frequency_penalty", "logit_bias")} == {
        "n": 3, "top_k": 5, "min_p": 0.1, "repeat_penalty": 1.2, "seed": -1, "presence_penalty": 0.5,
        "frequency_penalty": -0.5, "logit_bias": {"7": -100.0}}
    assert body["response_format"] == {"type": "json_object", "json_schema": None}


def test_a_json_schema_reaches_the_worker_under_its_own_name():
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"}, "strict": True}}
    body = parse_request({**CHAT, "response_format": fmt}, chat=True).worker_body
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}


def _logprobs(token: str, logprob: float, *top: tuple[str, float]) -> TokenLogprobs:
    def candidate(text: str, value: float) -> Candidate:
        return Candidate(text, value, tuple(text.encode()))

    return TokenLogprobs(candidate(token, logprob), tuple(candidate(t, v) for t, v in top))


def _responder(body: dict, chat: bool) -> OpenAIResponder:
    return OpenAIResponder(parse_request(body, chat))


def test_a_whole_chat_answer_has_one_choice_per_n_with_its_own_finish_reason():
    responder = _responder({**CHAT, "n": 2}, chat=True)
    for token in (wire.Token("a", 0), wire.Token("b", 0, choice=1), wire.Token("c", 1)):
        responder.add(token)
    end = wire.End(3, StopReason.EOS, 1.0, 1.0, (StopReason.EOS, StopReason.MAX_TOKENS))
    answer = responder.complete(end)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in answer["choices"]] == [
        (0, "ac", "stop"), (1, "b", "length")]
    assert answer["usage"]["completion_tokens"] == 3


def test_chat_logprobs_take_openais_content_shape():
    responder = _responder({**CHAT, "logprobs": True, "top_logprobs": 1}, chat=True)
    responder.add(wire.Token("Hi", 0, _logprobs("Hi", -0.5, ("Hi", -0.5))))
    content = responder.complete(wire.End(1, StopReason.EOS, 1.0))["choices"][0]["logprobs"]["content"]
    assert content == [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105],
                        "top_logprobs": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}]}]


def test_completion_logprobs_take_the_legacy_shape_with_offsets_across_chunks():
    responder = _responder({**TEXT, "logprobs": 1, "stream": True}, chat=False)
    first = responder.chunk(wire.Token("Once", 0, _logprobs("Once", -1.0, ("A", -0.2))))
    second = responder.chunk(wire.Token(" more", 1, _logprobs(" more", -2.0, (" more", -2.0))))
    assert first["choices"][0]["logprobs"] == {
        "tokens": ["Once"], "token_logprobs": [-1.0], "top_logprobs": [{"A": -0.2, "Once": -1.0}],
        "text_offset": [0]}
    assert second["choices"][0]["logprobs"]["text_offset"] == [4]


def test_streamed_chat_chunks_name_the_role_once_per_choice_and_end_every_choice():
    responder = _responder({**CHAT, "n": 2, "stream": True}, chat=True)
    chunks = [responder.chunk(wire.Token("a", 0)), responder.chunk(wire.Token("b", 0, choice=1)),
              responder.chunk(wire.Token("c", 1))]
    roles = [(c["choices"][0]["index"], c["choices"][0]["delta"].get("role")) for c in chunks]
    assert roles == [(0, "assistant"), (1, "assistant"), (0, None)]
    finals = responder.final_chunks(wire.End(3, StopReason.STOP, 1.0, 1.0, (StopReason.STOP, StopReason.EOS)))
    assert [(c["choices"][0]["index"], c["choices"][0]["finish_reason"]) for c in finals] == [
        (0, "stop"), (1, "stop")]


def test_no_logprobs_object_unless_asked():
    responder = _responder(TEXT, chat=False)
    responder.add(wire.Token("x", 0))
    assert responder.complete(wire.End(1, StopReason.EOS, 1.0))["choices"][0]["logprobs"] is None


def test_a_token_event_keeps_its_logprobs_and_choice_over_the_wire():
    event = wire.Token("Hi", 3, _logprobs("Hi", -0.25, ("Yo", -0.1)), 2)
    assert wire.parse_event(event.to_wire()) == event
    assert wire.Token("Hi", 0).to_wire() == {"type": "token", "token": "Hi", "index": 0}


def test_an_end_event_keeps_each_choices_stop_reason_over_the_wire():
    end = wire.End(5, StopReason.EOS, 2.0, 1.0, (StopReason.EOS, StopReason.MAX_TOKENS))
    assert wire.parse_event(end.to_wire()) == end
    assert wire.End(5, StopReason.EOS, 2.0).choice_stop_reasons(2) == (StopReason.EOS, StopReason.EOS)
