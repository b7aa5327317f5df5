"""Splitting a worker's native event stream, read by read, as the queen relays it: token events
kept as their bytes in runs of those that arrived together, the other events parsed, frames cut
across reads joined, nothing after `[DONE]`."""

import json

import pytest

from rbee.common import wire
from rbee.common.native_stream import NativeStreamReader, TokenRun


def frame(event: dict) -> bytes:
    """An event as the worker writes it (compact JSON, `type` first)."""
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


STARTED = frame({"type": "started", "task_id": "t1", "worker_id": "w1", "slot": 0,
                 "prompt_tokens": 3})
TOKENS = [frame({"type": "token", "token": text, "index": i})
          for i, text in enumerate(["Once", " upon", " a"])]
END = frame({"type": "end", "tokens_out": 3, "stop_reason": "max_tokens", "duration_ms": 1.0})
DONE = b"data: [DONE]\n\n"


def read_all(reader: NativeStreamReader, chunks: list[bytes]) -> list:
    return [item for chunk in chunks for item in reader.feed(chunk)]


def kinds(items: list) -> list[str]:
    return [f"run of {item.count}" if isinstance(item, TokenRun) else item.TYPE for item in items]


def texts(items: list) -> list[str]:
    return [token.token for item in items if isinstance(item, TokenRun) for token in item.events()]


def test_a_lone_token_read_alone_is_a_run_of_its_own_bytes():
    reader = NativeStreamReader()
    (run,) = reader.feed(TOKENS[0])
    assert run == TokenRun(TOKENS[0], 1)
    assert [t.token for t in run.events()] == ["Once"]


def test_events_arriving_in_one_read_come_out_in_order_with_the_tokens_between_them_as_one_run():
    reader = NativeStreamReader()
    items = read_all(reader, [STARTED + b"".join(TOKENS) + END + DONE])
    assert kinds(items) == ["started", "run of 3", "end"]
    assert items[1].frames == b"".join(TOKENS)
    assert texts(items) == ["Once", " upon", " a"]
    assert items[2].tokens_out == 3
    assert reader.done


def test_an_end_event_split_across_reads_is_recognised_once_its_rest_arrives():
    reader = NativeStreamReader()
    cut = len(END) // 2
    first = reader.feed(TOKENS[0] + END[:cut])
    assert kinds(first) == ["run of 1"]
    assert reader.feed(END[cut:cut + 1]) == []
    rest = reader.feed(END[cut + 1:] + DONE)
    assert kinds(rest) == ["end"] and rest[0].stop_reason == wire.StopReason.MAX_TOKENS
    assert reader.done


def test_a_stream_fed_one_byte_at_a_time_gives_the_same_events():
    stream = STARTED + b"".join(TOKENS) + END + DONE
    reader = NativeStreamReader()
    items = read_all(reader, [stream[i:i + 1] for i in range(len(stream))])
    assert kinds(items) == ["started", "run of 1", "run of 1", "run of 1", "end"]
    assert texts(items) == ["Once", " upon", " a"]


def test_what_follows_done_is_ignored():
    reader = NativeStreamReader()
    items = read_all(reader, [TOKENS[0] + DONE + TOKENS[1], TOKENS[2]])
    assert kinds(items) == ["run of 1"] and reader.done


def test_a_token_written_another_way_is_parsed_and_joins_the_run_and_comments_are_skipped():
    spaced = b'data: {"token": " upon", "type": "token", "index": 1}\n\n'
    reader = NativeStreamReader()
    items = read_all(reader, [b": a comment\n\n" + TOKENS[0] + spaced + TOKENS[2]])
    assert kinds(items) == ["run of 3"]
    assert texts(items) == ["Once", " upon", " a"]


def test_parsing_tokens_gives_each_run_its_token_events():
    reader = NativeStreamReader(parse_tokens=True)
    items = read_all(reader, [TOKENS[0], TOKENS[1] + TOKENS[2]])
    assert [[t.index for t in item.tokens] for item in items] == [[0], [1, 2]]


def test_a_malformed_token_is_refused_when_tokens_are_parsed():
    reader = NativeStreamReader(parse_tokens=True)
    with pytest.raises(ValueError):
        reader.feed(b'data: {"type":"token","index":0}\n\n')


NOT_EVENTS = [b'data: {"type":"bogus"}\n\n', b"data: [1, 2]\n\n", b"data: {oops\n\n"]


@pytest.mark.parametrize("payload", NOT_EVENTS)
def test_a_payload_that_is_no_native_event_is_refused(payload):
    with pytest.raises(ValueError):
        NativeStreamReader().feed(payload)
