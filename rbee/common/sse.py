"""Server-Sent Events: writing a stream from aiohttp handlers and reading one as a client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from rbee.common.errors import CORRELATION_HEADER, correlation_id_of
from rbee.common.wire import WireEvent

DONE = "[DONE]"
DONE_BYTES = DONE.encode()
EVENT_END = b"\n\n"


class StreamTruncated(Exception):
    """The peer closed an event stream before its `[DONE]` line."""


async def open_stream(
    request: web.Request, status: int = 200, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Prepare an SSE response with extra `headers` (headers sent at once, nothing buffered)."""
    response = web.StreamResponse(
        status=status,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            CORRELATION_HEADER: correlation_id_of(request),
            **(headers or {}),
        },
    )
    await response.prepare(request)
    return response


class Event(dict[str, Any]):
    """A received event that keeps the JSON it arrived as, so relaying it unchanged costs no
    re-encoding. Copy it (`{**event, ...}`) to change it: the copy is encoded afresh."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        super().__init__(json.loads(raw))
        self.raw = raw


def data_frame(payload: WireEvent | dict[str, Any] | str) -> bytes:
    """One `data:` event's bytes: a typed event as `WireEvent.encode` gives it, a received
    `Event` as it came, another dict as compact JSON."""
    if isinstance(payload, WireEvent):
        data = payload.encode()
    elif isinstance(payload, Event):
        data = payload.raw
    elif isinstance(payload, str):
        data = payload.encode()
    else:
        data = json.dumps(payload, separators=(",", ":")).encode()
    return b"data: " + data + b"\n\n"


async def send_data(response: web.StreamResponse, payload: WireEvent | dict[str, Any] | str) -> None:
    """Write one `data:` event (`data_frame`)."""
    await response.write(data_frame(payload))


async def send_comment(response: web.StreamResponse, text: str) -> None:
    """Write an SSE comment line, which clients ignore."""
    await response.write(f": {text}\n\n".encode())


async def iter_events(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """Yield the JSON events of a native token stream until `[DONE]`, each as soon as it has
    arrived (one read per event: events end with a blank line)."""
    while block := await response.content.readuntil(EVENT_END):
        for line in block.splitlines():
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data == DONE_BYTES:
                    return
                yield Event(data)
    raise StreamTruncated("event stream ended without [DONE]")
