"""Steps driving the queen's `/v1/embeddings` with the official openai client."""

from __future__ import annotations

import base64
import json
import math
import struct

import openai
from behave import given, then, when

from rbee.testing.cluster import http_json
from rbee.testing.http_client import request
from steps.common import tiny_ref
from steps.openai_steps import _client, _messages

ENCODINGS = {"as floats": "float", "as base64": "base64"}


def _tokens(context, text: str) -> list[int]:
    """`text` tokenized by llama.cpp itself, as an embedding worker tokenizes a string input."""
    from llama_cpp import Llama

    if getattr(context, "tokenizer", None) is None:
        context.tokenizer = Llama(model_path=str(context.tiny_model), vocab_only=True, verbose=False)
    return context.tokenizer.tokenize(text.encode("utf-8"), add_bos=True, special=False)


def _embed(context, inputs, **options):
    return _client(context).embeddings.create(model=tiny_ref(context), input=inputs, **options)


def _unpack(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


@when('the openai client embeds "{text}" with the tiny model {encoding}')
def embed_one(context, text: str, encoding: str) -> None:
    options = {} if encoding == "in its default encoding" else {"encoding_format": ENCODINGS[encoding]}
    context.embedding = _embed(context, text, **options)
    context.embedded_text = text
    earlier = getattr(context, "by_encoding", {})
    context.by_encoding = {**earlier, encoding: context.embedding.data[0].embedding}


@given('the openai client embedded "{text}" with the tiny model')
def embedded_before(context, text: str) -> None:
    embed_one(context, text, "as floats")


@given("the openai client asked for a chat completion of the tiny model")
def chatted_before(context) -> None:
    completion = _client(context).chat.completions.create(model=tiny_ref(context), messages=_messages(),
                                                          max_tokens=4)
    assert completion.choices[0].message.role == "assistant"


@when('the openai client embeds the inputs {quoted} with the tiny model')
def embed_many(context, quoted: str) -> None:
    context.inputs = json.loads(f"[{quoted.replace(' and ', ', ')}]")
    context.embedding = _embed(context, context.inputs, encoding_format="float")


@when('the openai client embeds the token ids of "{text}" with the tiny model')
def embed_token_ids(context, text: str) -> None:
    context.token_embedding = _embed(context, _tokens(context, text), encoding_format="float")


@when("the openai client asks for embeddings of the tiny model with {body}")
def embed_bad(context, body: str) -> None:
    if body.startswith("an input of "):
        count = int(body.split()[3])
        fields = {"input": [5] * count}
    else:
        name, value = body.split(" ", 1)
        fields = {"input": "text", name: json.loads(value)}
    inputs = fields.pop("input")
    try:
        _embed(context, inputs, extra_body=fields) if fields else _embed(context, inputs)
    except openai.APIStatusError as exc:
        context.error = exc
    else:
        raise AssertionError("the request was accepted")


@then("the answer holds {count:d} embedding of {dimensions:d} dimensions")
def holds_one(context, count: int, dimensions: int) -> None:
    data = context.embedding.data
    assert context.embedding.object == "list" and context.embedding.model == tiny_ref(context)
    assert len(data) == count, data
    assert all(item.object == "embedding" and len(item.embedding) == dimensions for item in data), data


@then("the answer holds {count:d} embeddings with indexes 0, 1 and 2")
def holds_indexed(context, count: int) -> None:
    assert [item.index for item in context.embedding.data] == list(range(count))


@then("every embedding has unit norm")
def unit_norm(context) -> None:
    for item in context.embedding.data:
        norm = math.sqrt(sum(value * value for value in item.embedding))
        assert abs(norm - 1.0) < 1e-5, norm


@then("the usage counts the input's tokens")
def usage_tokens(context) -> None:
    usage = context.embedding.usage
    expected = len(_tokens(context, context.embedded_text))
    assert usage.prompt_tokens == usage.total_tokens == expected, (usage, expected)


@then("the queen lists {embedding:d} embedding and {generation:d} generation workers of the tiny model")
def workers_by_kind(context, embedding: int, generation: int) -> None:
    _, body = http_json(f"{context.queen_url}/v2/workers/list")
    listed = [w for w in body["workers"] if w["model"] == tiny_ref(context)]
    kinds = [w["embedding"] for w in listed]
    assert (kinds.count(True), kinds.count(False)) == (embedding, generation), listed
    context.workers = {w["embedding"]: w for w in listed}


@then('the embedding worker refuses a generation with {status:d} "{code}"')
def embedding_worker_refuses(context, status: int, code: str) -> None:
    body = {"prompt": "Once", "max_tokens": 2}
    answer = request("POST", f"{context.workers[True]['url']}/v1/inference", body)
    assert answer.status == status and answer.json()["error"]["code"] == code, answer


@then('the generation worker refuses embeddings with {status:d} "{code}"')
def generation_worker_refuses(context, status: int, code: str) -> None:
    answer = request("POST", f"{context.workers[False]['url']}/v1/embeddings", {"input": "Once"})
    assert answer.status == status and answer.json()["error"]["code"] == code, answer


@then("the base64 embedding decodes to the float embedding")
def base64_equals_float(context) -> None:
    encoded = context.by_encoding["as base64"]
    assert isinstance(encoded, str), encoded
    floats = context.by_encoding["as floats"]
    assert _unpack(encoded) == floats


@then("the default-encoding embedding equals the float embedding")
def default_equals_float(context) -> None:
    assert list(context.by_encoding["in its default encoding"]) == context.by_encoding["as floats"]


@then("embeddings 0 and 2 are identical and embedding 1 differs")
def identical_and_different(context) -> None:
    first, second, third = (item.embedding for item in context.embedding.data)
    assert first == third
    assert max(abs(a - b) for a, b in zip(first, second, strict=True)) > 1e-3


@then('embedding 1 equals the embedding of "{text}" alone')
def equals_alone(context, text: str) -> None:
    alone = _embed(context, text, encoding_format="float").data[0].embedding
    in_list = context.embedding.data[1].embedding
    assert max(abs(a - b) for a, b in zip(alone, in_list, strict=True)) < 1e-5


@then("the token-id embedding equals the text embedding")
def token_ids_equal_text(context) -> None:
    by_ids = context.token_embedding.data[0].embedding
    assert by_ids == context.by_encoding["as floats"]


@then('the embedding request was refused with 400 "{code}" naming "{field}"')
def bad_request_naming(context, code: str, field: str) -> None:
    body = context.error.body
    assert context.error.status_code == 400, context.error
    assert body["code"] == code and body["details"]["field"] == field, body


@then("the error details give {tokens:d} input tokens against a context of {context_tokens:d} tokens")
def too_long_counts(context, tokens: int, context_tokens: int) -> None:
    details = context.error.body["details"]
    assert (details["input_tokens"], details["context_tokens"]) == (tokens, context_tokens), details
