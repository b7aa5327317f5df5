"""Reading a worker's native event stream for relaying: token events stay the bytes they came
in, grouped in runs of those that arrived together; only the other events are parsed.

Whatever one read returns is split at once, so tokens that piled up while the reader was busy
go on as one run (one write, one send) and a lone token goes on as soon as it arrived. A token
event is recognised by how `sse.send_data` writes it (`TOKEN_FRAME`), without parsing its JSON;
a token event written otherwise is parsed, and joins the run all the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rbee.common import wire
from rbee.common.sse import DONE_BYTES

FRAME_END = b"\n\n"
DATA = b"data:"
TOKEN_FRAME = b'data: {"type":"token"'
"""The start of a token event as the worker writes it (`sse.send_data` of a `wire.Token`)."""
_DATA_PREFIX = len(b"data: ")


@dataclass(frozen=True, slots=True)
class TokenRun:
    """Token events that arrived together, in order, as their SSE frames (`data: …` lines each
    ended by a blank line): relaying them is one write of `frames`. `tokens` holds them parsed
    when the reader was asked to parse them."""

    frames: bytes
    count: int
    tokens: tuple[wire.Token, ...] | None = None

    def events(self) -> tuple[wire.Token, ...]:
        """The run's token events, parsed (those the reader parsed, else parsed now)."""
        if self.tokens is not None:
            return self.tokens
        return tuple(_token(frame[_DATA_PREFIX:]) for frame in self.frames.split(FRAME_END)[:-1])


StreamItem = TokenRun | wire.TaskEvent
"""What a native stream's reader hands on: a run of token events, or another event parsed."""


def _event(data: bytes) -> wire.TaskEvent:
    """The event of one `data:` payload (WireError or ValueError when it is none)."""
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise wire.WireError(f"an event is a JSON object, not {type(obj).__name__}")
    return wire.parse_event(obj, data)


def _token(data: bytes) -> wire.Token:
    event = _event(data)
    if not isinstance(event, wire.Token):
        raise wire.WireError(f"expected a token event, got {event.TYPE}")
    return event


class NativeStreamReader:
    """Splits the bytes of a native event stream, read by read, into token runs and events,
    until `[DONE]` (`done`). A frame cut across reads waits for its end in the next read."""

    def __init__(self, parse_tokens: bool = False) -> None:
        self._rest = b""
        self._parse_tokens = parse_tokens
        self.done = False
        """True once `[DONE]` arrived; whatever follows it is ignored."""

    def feed(self, chunk: bytes) -> list[StreamItem]:
        """The items whose frames `chunk` completes, in the order they came (raises WireError or
        ValueError for a payload that is no native event)."""
        if self.done:
            return []
        if self._rest:
            chunk, self._rest = self._rest + chunk, b""
        end = chunk.rfind(FRAME_END)
        if end < 0:
            self._rest = chunk
            return []
        if end + 2 < len(chunk):
            self._rest = chunk[end + 2:]
        if chunk.startswith(TOKEN_FRAME) and chunk.find(b"\n") == end:  # the usual read: one token
            frame = chunk if end + 2 == len(chunk) else chunk[:end + 2]
            tokens = (_token(frame[_DATA_PREFIX:end]),) if self._parse_tokens else None
            return [TokenRun(frame, 1, tokens)]
        return self._split(chunk[:end].split(FRAME_END))

    def _split(self, frames: list[bytes]) -> list[StreamItem]:
        items: list[StreamItem] = []
        run: list[bytes] = []
        for frame in frames:
            if frame.startswith(TOKEN_FRAME) and b"\n" not in frame:
                run.append(frame)
                continue
            for line in frame.split(b"\n"):
                if not line.startswith(DATA):
                    continue  # a comment or an empty line
                data = line[len(DATA):].strip()
                if data == DONE_BYTES:
                    self.done = True
                    break
                event = _event(data)
                if isinstance(event, wire.Token):
                    run.append(b"data: " + data)
                    continue
                if run:
                    items.append(self._run(run))
                    run = []
                items.append(event)
            if self.done:
                break
        if run:
            items.append(self._run(run))
        return items

    def _run(self, frames: list[bytes]) -> TokenRun:
        joined = FRAME_END.join(frames) + FRAME_END
        if not self._parse_tokens:
            return TokenRun(joined, len(frames))
        return TokenRun(joined, len(frames), tuple(_token(frame[_DATA_PREFIX:]) for frame in frames))
