"""Steps for structured output, log probabilities, the sampling fields and `n`, driven with the
official openai client."""

from __future__ import annotations

import asyncio
import functools
import json

import openai
import pydantic
from behave import then, when

from steps.common import matches_schema, tiny_ref
from steps.openai_steps import _client, _messages

PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer"},
        "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}, "maxItems": 3},
    },
    "required": ["name", "age", "pets"],
    "additionalProperties": False,
}
PERSON_FORMAT = {"type": "json_schema",
                 "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True}}
STRUCTURED_TOKENS = 400
"""Room for a whole structured answer of the tiny model (a grammar ends it well before)."""


class Person(pydantic.BaseModel):
    """The model the SDK's parse helper fills."""

    name: str
    age: int


def _chat(context, **fields):
    return _client(context).chat.completions.create(model=tiny_ref(context), messages=_messages(), **fields)


def _text(context, **fields):
    return _client(context).completions.create(model=tiny_ref(context), prompt="Once upon a time", **fields)


def _matches_person(text: str) -> None:
    assert matches_schema(PERSON_SCHEMA, json.loads(text)), text


@functools.cache
def _vocab(path: str):
    import llama_cpp

    return llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)


def _token_id(context, text: str) -> int:
    """The one token of the tiny model whose text is `text`."""
    vocab = _vocab(str(context.tiny_model))
    ids = [i for i in range(vocab.n_vocab()) if vocab.detokenize([i]) == text.encode()]
    assert len(ids) == 1, (text, ids)
    return ids[0]


@when("the openai client asks for a chat completion with response_format json_object")
def chat_json_object(context) -> None:
    context.completion = _chat(context, response_format={"type": "json_object"}, max_tokens=STRUCTURED_TOKENS,
                               temperature=0)


@when("the openai client asks for a chat completion with the person json_schema and seed {seed:d}")
def chat_person(context, seed: int) -> None:
    context.completion = _chat(context, response_format=PERSON_FORMAT, max_tokens=STRUCTURED_TOKENS,
                               temperature=1.0, seed=seed)


@when("the async openai client asks for a chat completion with the person json_schema and seed {seed:d}")
def async_chat_person(context, seed: int) -> None:
    async def ask():
        base_url = f"{context.queen_url}/v1"
        async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as client:
            return await client.chat.completions.create(
                model=tiny_ref(context), messages=_messages(), response_format=PERSON_FORMAT,
                max_tokens=STRUCTURED_TOKENS, temperature=1.0, seed=seed)

    context.completion = asyncio.run(ask())


@when("the openai client streams a chat completion with the person json_schema and seed {seed:d}")
def chat_person_stream(context, seed: int) -> None:
    context.chunks = list(_chat(context, response_format=PERSON_FORMAT, max_tokens=STRUCTURED_TOKENS,
                                temperature=1.0, seed=seed, stream=True))


@when("the openai client asks for a text completion with the person json_schema and seed {seed:d}")
def text_person(context, seed: int) -> None:
    context.completion = _text(context, max_tokens=STRUCTURED_TOKENS, temperature=1.0, seed=seed,
                               extra_body={"response_format": PERSON_FORMAT})


@when("the openai client parses a chat completion into the Person pydantic model")
def chat_parse(context) -> None:
    client = _client(context)
    parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
    context.completion = parse(model=tiny_ref(context), messages=_messages(), response_format=Person,
                               max_tokens=STRUCTURED_TOKENS, temperature=0)


@when("the openai client asks for a chat completion with the person json_schema and {n:d} max tokens")
def chat_person_cut(context, n: int) -> None:
    context.completion = _chat(context, response_format=PERSON_FORMAT, max_tokens=n, temperature=0)


@when("the openai client asks for a chat completion with a json_schema of an unknown type")
def chat_bad_schema(context) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "odd", "schema": {"type": "spaceship"}}}
    try:
        _chat(context, response_format=bad, max_tokens=8)
    except openai.APIStatusError as exc:
        context.error = exc
    else:
        raise AssertionError("the request was accepted")


@then("the answer parses as a JSON object")
def parses_as_object(context) -> None:
    content = context.completion.choices[0].message.content
    assert isinstance(json.loads(content), dict), content


@then("the answer parses and matches the person schema")
def matches_person(context) -> None:
    choice = context.completion.choices[0]
    _matches_person(choice.message.content if hasattr(choice, "message") else choice.text)


@then("the streamed answer parses and matches the person schema")
def streamed_matches_person(context) -> None:
    _matches_person("".join(c.choices[0].delta.content or "" for c in context.chunks if c.choices))


@then('every choice finished with "{reason}"')
def every_choice_finished(context, reason: str) -> None:
    assert [c.finish_reason for c in context.completion.choices] == [reason] * len(context.completion.choices)


@then('every streamed choice finished with "{reason}"')
def every_streamed_choice_finished(context, reason: str) -> None:
    reasons = [choice.finish_reason for c in context.chunks for choice in c.choices if choice.finish_reason]
    assert reasons == [reason], reasons


@then("the parsed answer is a Person")
def parsed_person(context) -> None:
    parsed = context.completion.choices[0].message.parsed
    assert isinstance(parsed, Person), parsed


@then('the openai client got 400 naming the field "{name}"')
def refused_naming(context, name: str) -> None:
    assert context.error.status_code == 400, context.error
    body = context.error.body
    assert body["details"]["field"] == name, body
    assert name in body["message"] and "Traceback" not in body["message"], body


@when("the openai client asks for a chat completion of {n:d} tokens with logprobs and {top:d} top_logprobs")
def chat_logprobs(context, n: int, top: int) -> None:
    context.completion = _chat(context, max_tokens=n, logprobs=True, top_logprobs=top, temperature=0,
                               extra_body={"ignore_eos": True})


@when("the openai client streams a chat completion of {n:d} tokens with logprobs and {top:d} top_logprobs")
def chat_logprobs_stream(context, n: int, top: int) -> None:
    context.chunks = list(_chat(context, max_tokens=n, logprobs=True, top_logprobs=top, stream=True,
                                extra_body={"ignore_eos": True}))
    context.max_tokens = n


@then("every chat token has a log probability and {top:d} alternatives, the likeliest first")
def chat_token_logprobs(context, top: int) -> None:
    entries = context.completion.choices[0].logprobs.content
    assert len(entries) == context.completion.usage.completion_tokens, entries
    for entry in entries:
        assert entry.logprob <= 0 and bytes(entry.bytes).decode() == entry.token
        alternatives = [alt.logprob for alt in entry.top_logprobs]
        assert len(alternatives) == top and alternatives == sorted(alternatives, reverse=True), entry
        assert entry.logprob == alternatives[0]  # greedy: the sampled token is the likeliest


@then("the chat tokens spell the answer")
def chat_tokens_spell(context) -> None:
    choice = context.completion.choices[0]
    assert "".join(entry.token for entry in choice.logprobs.content) == choice.message.content


@then("every streamed chat token has a log probability and {top:d} alternatives")
def streamed_chat_logprobs(context, top: int) -> None:
    entries = [entry for c in context.chunks for choice in c.choices if choice.logprobs
               for entry in choice.logprobs.content]
    assert len(entries) == context.max_tokens, entries
    assert all(len(entry.top_logprobs) == top and entry.logprob <= 0 for entry in entries), entries


@when("the openai client asks for a text completion of {n:d} tokens with logprobs {top:d}")
def text_logprobs(context, n: int, top: int) -> None:
    context.completion = _text(context, max_tokens=n, logprobs=top, extra_body={"ignore_eos": True})
    context.top = top


@when("the openai client streams a text completion of {n:d} tokens with logprobs {top:d}")
def text_logprobs_stream(context, n: int, top: int) -> None:
    context.chunks = list(_text(context, max_tokens=n, logprobs=top, stream=True,
                                extra_body={"ignore_eos": True}))
    context.max_tokens = n


def _check_completion_logprobs(tokens, token_logprobs, top_logprobs, offsets, text, top: int) -> None:
    assert len(tokens) == len(token_logprobs) == len(top_logprobs) == len(offsets)
    assert "".join(tokens) == text
    assert offsets == [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))], offsets
    assert all(lp <= 0 for lp in token_logprobs)
    # the likeliest `top` and the sampled token, keyed by text (tokens of the same text share a key)
    for token, logprob, alternatives in zip(tokens, token_logprobs, top_logprobs, strict=True):
        assert alternatives[token] == logprob and 1 <= len(alternatives) <= top + 1, alternatives


@then("the completion logprobs list every token with its offset and {top:d} alternatives")
def completion_logprobs(context, top: int) -> None:
    choice = context.completion.choices[0]
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == context.completion.usage.completion_tokens
    _check_completion_logprobs(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs,
                               logprobs.text_offset, choice.text, top)


@then("the streamed completion logprobs list every token with its offset and {top:d} alternative")
def streamed_completion_logprobs(context, top: int) -> None:
    parts = [choice for c in context.chunks for choice in c.choices if choice.logprobs]
    tokens = [t for p in parts for t in p.logprobs.tokens]
    assert len(tokens) == context.max_tokens, tokens
    _check_completion_logprobs(tokens, [lp for p in parts for lp in p.logprobs.token_logprobs],
                               [alt for p in parts for alt in p.logprobs.top_logprobs],
                               [o for p in parts for o in p.logprobs.text_offset],
                               "".join(choice.text for c in context.chunks for choice in c.choices), top)


@then("the choice has no log probabilities")
def no_logprobs(context) -> None:
    assert context.completion.choices[0].logprobs is None


@when("the openai client asks for {n:d} chat choices of {tokens:d} tokens at temperature 1 "
      "with seed {seed:d}")
def chat_choices(context, n: int, tokens: int, seed: int) -> None:
    context.completion = _chat(context, n=n, max_tokens=tokens, temperature=1.0, seed=seed,
                               extra_body={"ignore_eos": True})


@then("there are {n:d} choices with indexes 0 to {last:d} that differ")
def choices_differ(context, n: int, last: int) -> None:
    choices = context.completion.choices
    assert [c.index for c in choices] == list(range(last + 1)) and len(choices) == n
    assert len({c.message.content for c in choices}) == n, [c.message.content for c in choices]


@then("the usage counts the completion tokens of every choice")
def usage_all_choices(context) -> None:
    usage = context.completion.usage
    assert usage.completion_tokens == 10 * len(context.completion.choices), usage


@when("the openai client streams {n:d} text choices of {tokens:d} tokens at temperature 1 with seed {seed:d}")
def text_choices_stream(context, n: int, tokens: int, seed: int) -> None:
    context.chunks = list(_text(context, n=n, max_tokens=tokens, temperature=1.0, seed=seed, stream=True,
                                extra_body={"ignore_eos": True}))


@then("the streamed chunks carry the indexes 0 to {last:d} and each choice has a finish reason")
def streamed_choice_indexes(context, last: int) -> None:
    texts: dict[int, str] = {}
    finished: dict[int, str] = {}
    for chunk in context.chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason:
                finished[choice.index] = choice.finish_reason
    assert sorted(texts) == list(range(last + 1)) and all(texts.values()), texts
    assert finished == dict.fromkeys(range(last + 1), "length"), finished


@when("the openai client asks for {n:d} chat choices with the person json_schema")
def chat_person_choices(context, n: int) -> None:
    context.completion = _chat(context, n=n, response_format=PERSON_FORMAT, max_tokens=STRUCTURED_TOKENS,
                               temperature=1.0, seed=21)


@then("every choice parses and matches the person schema")
def every_choice_person(context) -> None:
    assert len(context.completion.choices) == 3
    for choice in context.completion.choices:
        _matches_person(choice.message.content)
        assert choice.finish_reason == "stop"


@when("the openai client asks twice for a chat completion at temperature {temperature:g} with seed {seed:d}")
def chat_twice_seeded(context, temperature: float, seed: int) -> None:
    context.answers = [_chat(context, max_tokens=24, temperature=temperature, seed=seed,
                             extra_body={"ignore_eos": True}).choices[0].message.content for _ in range(2)]


@then("both answers are the same")
def both_same(context) -> None:
    first, second = context.answers
    assert first == second and first, context.answers


@when("the openai client asks for a chat completion at temperature 1 with seed -1")
def chat_random_seed(context) -> None:
    context.completion = _chat(context, max_tokens=8, temperature=1.0, seed=-1)


@when("the openai client asks for a greedy text completion and then bans its longest token "
      "with logit_bias -100")
def ban_token(context) -> None:
    first = _text(context, max_tokens=16, temperature=0, logprobs=0, extra_body={"ignore_eos": True})
    tokens = first.choices[0].logprobs.tokens
    context.banned = max(tokens, key=len)
    bias = {str(_token_id(context, context.banned)): -100}
    second = _text(context, max_tokens=16, temperature=0, logprobs=0, logit_bias=bias,
                   extra_body={"ignore_eos": True})
    context.tokens = second.choices[0].logprobs.tokens
    assert context.banned in tokens and len(context.banned) > 1, tokens


@then("the second answer's tokens do not include the banned one")
def banned_absent(context) -> None:
    assert context.banned not in context.tokens, (context.banned, context.tokens)


@when('the openai client asks for a text completion with logit_bias +100 on the token "{text}"')
def force_token(context, text: str) -> None:
    bias = {str(_token_id(context, text)): 100}
    answer = _text(context, max_tokens=8, temperature=1.0, seed=3, logprobs=0, logit_bias=bias)
    context.tokens = answer.choices[0].logprobs.tokens
    context.forced = text


@then('every token of the answer is " hello"')
def all_forced(context) -> None:
    assert context.tokens == [context.forced] * 8, context.tokens


@when("the openai client asks for a greedy chat completion and one at temperature 2 with top_k 1")
def greedy_and_top_k(context) -> None:
    greedy = _chat(context, max_tokens=16, temperature=0, extra_body={"ignore_eos": True})
    top_one = _chat(context, max_tokens=16, temperature=2, seed=8,
                    extra_body={"ignore_eos": True, "top_k": 1})
    context.answers = [greedy.choices[0].message.content, top_one.choices[0].message.content]


@when("the openai client asks for a greedy text completion and one with presence_penalty 2 "
      "and frequency_penalty 2 and repeat_penalty 3")
def greedy_and_penalized(context) -> None:
    plain = _text(context, max_tokens=32, temperature=0, extra_body={"ignore_eos": True})
    penalized = _text(context, max_tokens=32, temperature=0, presence_penalty=2, frequency_penalty=2,
                      extra_body={"ignore_eos": True, "repeat_penalty": 3})
    context.answers = [plain.choices[0].text, penalized.choices[0].text]


@then("the answers differ")
def answers_differ(context) -> None:
    first, second = context.answers
    assert first != second, context.answers


@when("the openai client posts a {route} completion with {field} set to {value}")
def post_bad_field(context, route: str, field: str, value: str) -> None:
    """Send `value` as the top-level field of `field` (`response_format.type`: `response_format`)."""
    body = {field.split(".")[0]: json.loads(value), "max_tokens": 4}
    try:
        if route == "chat":
            _client(context).chat.completions.create(model=tiny_ref(context), messages=_messages(),
                                                     extra_body=body)
        else:
            _client(context).completions.create(model=tiny_ref(context), prompt="Once", extra_body=body)
    except openai.APIStatusError as exc:
        context.error = exc
    else:
        raise AssertionError("the request was accepted")
