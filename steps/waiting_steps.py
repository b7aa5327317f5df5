"""Steps for requests that wait at the queen (queued and loading comments, the wait header), for
errors in OpenAI's shape and for `/v1/models/{id}`, through raw HTTP and the official openai client
(whose raw stream bytes are recorded by an httpx2 transport, the HTTP client the openai package
uses, to see the comments it skipped)."""

from __future__ import annotations

import json
import re
import threading
import time

import httpx2
import openai
from behave import given, then, when

from rbee.testing.cluster import http_json
from rbee.testing.http_client import EventStream, request
from steps.common import tiny_ref

WAIT_HEADER = "X-Rbee-Queue-Wait-Ms"
STREAM_TIMEOUT_S = 60.0
_LOADING = re.compile(rb"^: loading (\d+)%$", re.MULTILINE)


class _Tee(httpx2.SyncByteStream):
    """A response body read through, with a copy of every byte kept in `sink`."""

    def __init__(self, inner: httpx2.SyncByteStream, sink: bytearray) -> None:
        self._inner = inner
        self._sink = sink

    def __iter__(self):
        for chunk in self._inner:
            self._sink.extend(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _Recording(httpx2.HTTPTransport):
    """An httpx2 transport that records the raw bytes of every response body it hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.raw = bytearray()

    def handle_request(self, sent: httpx2.Request) -> httpx2.Response:
        response = super().handle_request(sent)
        return httpx2.Response(response.status_code, headers=response.headers, request=sent,
                              stream=_Tee(response.stream, self.raw), extensions=response.extensions)


def _client(context, transport: httpx2.BaseTransport | None = None) -> openai.OpenAI:
    http = httpx2.Client(transport=transport, timeout=STREAM_TIMEOUT_S) if transport else None
    return openai.OpenAI(base_url=f"{context.queen_url}/v1", api_key="x", max_retries=0, http_client=http)


def _chat_body(stream: bool) -> dict:
    return {"messages": [{"role": "user", "content": "Say something."}], "max_tokens": 8, "stream": stream}


@when("a streaming chat completion for the tiny model is sent without waiting for its answer")
def send_waiting_stream(context) -> None:
    body = {"model": tiny_ref(context), **_chat_body(stream=True)}
    context.waiting = EventStream(f"{context.queen_url}/v1/chat/completions", body, timeout=STREAM_TIMEOUT_S)
    context.streams.append(context.waiting)
    context.waiting_opened = threading.Thread(
        target=lambda: context.waiting.open().next_event(), daemon=True)
    context.waiting_opened.start()


@then('within {seconds:d} seconds that stream has sent the comment "{text}" and no event')
def stream_sent_comment(context, seconds: int, text: str) -> None:
    deadline = time.monotonic() + seconds
    while text not in context.waiting.comments and time.monotonic() < deadline:
        time.sleep(0.05)
    assert text in context.waiting.comments, context.waiting.comments
    assert context.waiting.status == 200 and context.waiting.events == [], context.waiting.events


@given("{count:d} native tasks for the tiny model have run to their end")
def tasks_ran(context, count: int) -> None:
    for _ in range(count):
        body = {"model": tiny_ref(context), "prompt": "Hi", "max_tokens": 2}
        answer = request("POST", f"{context.queen_url}/v2/tasks", body)
        assert answer.status == 200 and b'"type":"end"' in answer.body, answer


@then('within {seconds:d} seconds that stream has sent a comment "queued position=1 eta_s=S" with S a '
      "whole number above 0")
def stream_sent_eta(context, seconds: int) -> None:
    deadline = time.monotonic() + seconds
    pattern = re.compile(r"queued position=1 eta_s=([1-9]\d*)")
    while not any(pattern.fullmatch(c) for c in context.waiting.comments) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(pattern.fullmatch(c) for c in context.waiting.comments), context.waiting.comments


@then("that stream carries text chunks after its queued comments and ends with [DONE]")
def stream_carries_text(context) -> None:
    context.waiting_opened.join(STREAM_TIMEOUT_S)
    chunks = context.waiting.read_all()
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c.get("choices")]
    assert any(texts) and context.waiting.saw_done, chunks
    assert "error" not in json.dumps(chunks), chunks
    context.wait_headers = context.waiting.headers


def _waited_ms(context) -> int:
    value = context.wait_headers.get(WAIT_HEADER)
    assert value is not None and value.isdigit(), context.wait_headers
    return int(value)


@then("its X-Rbee-Queue-Wait-Ms header is a whole number above 0")
def waited_above_zero(context) -> None:
    assert _waited_ms(context) > 0, context.wait_headers


@then("its X-Rbee-Queue-Wait-Ms header is a whole number of at least 0")
def waited_at_least_zero(context) -> None:
    assert _waited_ms(context) >= 0, context.wait_headers


@when("the openai client streams a chat completion of the tiny model in the background")
def openai_stream_background(context) -> None:
    context.transport = _Recording()
    client = _client(context, context.transport)
    context.bg_chunks, context.bg_error = [], None

    def run() -> None:
        try:
            stream = client.chat.completions.create(model=tiny_ref(context), **_chat_body(stream=True))
            context.bg_chunks.extend(stream)
        except openai.APIError as exc:
            context.bg_error = exc

    context.bg_thread = threading.Thread(target=run, daemon=True)
    context.bg_thread.start()


@when("its request has waited in the queen's admission queue for 1 second")
def waited_in_queue(context) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, body = http_json(f"{context.queen_url}/v2/workers/list")
        if body and body["queue"]["by_model"].get(tiny_ref(context)) == 1:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the request never reached the admission queue")
    time.sleep(1.0)


@then("the openai client's stream carried text and a finish reason")
def openai_stream_carried(context) -> None:
    context.bg_thread.join(STREAM_TIMEOUT_S)
    assert not context.bg_thread.is_alive(), "the stream did not end"
    assert context.bg_error is None, context.bg_error
    chunks = context.bg_chunks
    assert any(c.choices and c.choices[0].delta.content for c in chunks), chunks
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}, chunks[-1]


@then('the raw stream it read held a "{text}" comment before the first chunk')
def raw_comment_before_chunk(context, text: str) -> None:
    raw = bytes(context.transport.raw)
    comment = raw.find(f": {text}\n".encode())
    assert comment != -1 and comment < raw.find(b"data:"), raw[:400]


@then('the raw stream it read held at least {count:d} different "loading N%" comments, N never falling')
def raw_loading_comments(context, count: int) -> None:
    raw = bytes(context.transport.raw)
    shares = [int(n) for n in _LOADING.findall(raw)]
    assert len(set(shares)) >= count, raw[:600]
    assert shares == sorted(shares), shares
    assert raw.rfind(b": loading") < raw.find(b"data:"), raw[:600]


@then('the answer is an event stream with queued comments ending in an error event "{code}"')
def stream_ends_in_error(context, code: str) -> None:
    answer = context.answer
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/event-stream"), answer
    lines = answer.body.decode().splitlines()
    assert any(line.startswith(": queued position=") for line in lines), lines
    events = [json.loads(line[5:]) for line in lines if line.startswith("data:") and "[DONE]" not in line]
    assert events and events[-1]["type"] == "error" and events[-1]["code"] == code, events
    assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]", lines[-3:]


@when("the openai client streams a chat completion of the tiny model")
def openai_stream_foreground(context) -> None:
    try:
        list(_client(context).chat.completions.create(model=tiny_ref(context), **_chat_body(stream=True)))
    except openai.APIStatusError as exc:
        context.error = exc
    else:
        raise AssertionError("the request was accepted")


@then('the openai client raised a {kind} with code "{code}" and type "{kind_of}"')
def openai_raised(context, kind: str, code: str, kind_of: str) -> None:
    error = context.error
    assert type(error) is getattr(openai, kind), repr(error)
    assert (error.code, error.type) == (code, kind_of), error.body
    assert (error.body["code"], error.body["type"]) == (code, kind_of), error.body


@then('the error\'s param is "{param}"')
def error_param(context, param: str) -> None:
    assert context.error.param == param == context.error.body["param"], context.error.body


@then("the error's param is null")
def error_param_null(context) -> None:
    assert context.error.param is None and context.error.body["param"] is None, context.error.body


@then("the error body keeps rbee's details and a correlation id")
def error_keeps_rbee(context) -> None:
    body = context.error.body
    assert body["details"]["field"] == body["param"], body
    assert body["correlation_id"] == context.error.response.headers["X-Correlation-ID"], body
    assert body["message"] and "Traceback" not in body["message"], body


@when("the openai client asks for a raw chat completion of the tiny model")
def raw_chat(context) -> None:
    raw = _client(context).chat.completions.with_raw_response.create(
        model=tiny_ref(context), **_chat_body(stream=False))
    assert raw.parse().choices[0].message.role == "assistant"
    waited = raw.headers.get(WAIT_HEADER)
    context.wait_headers = {} if waited is None else {WAIT_HEADER: waited}


def _retrieve(context, name: str) -> None:
    context.error = None
    try:
        context.model = _client(context).models.retrieve(name)
    except openai.APIStatusError as exc:
        context.error = exc


@when('the openai client retrieves the model "{name}"')
def retrieve_named(context, name: str) -> None:
    _retrieve(context, name)


@when("the openai client retrieves the tiny model by its file:// id")
def retrieve_tiny(context) -> None:
    _retrieve(context, tiny_ref(context))


def _check_model(context, name: str) -> None:
    assert context.error is None, context.error
    model = context.model
    assert (model.id, model.object, model.owned_by) == (name, "model", "rbee"), model
    assert isinstance(model.created, int), model


@then('the retrieved model is "{name}" in OpenAI\'s shape')
def retrieved_named(context, name: str) -> None:
    _check_model(context, name)


@then("the retrieved model is the tiny model in OpenAI's shape")
def retrieved_tiny(context) -> None:
    _check_model(context, tiny_ref(context))


@when("a chat completion for the tiny model is posted without streaming")
def post_chat_whole(context) -> None:
    body = {"model": tiny_ref(context), **_chat_body(stream=False)}
    context.answer = request("POST", f"{context.queen_url}/v1/chat/completions", body)
