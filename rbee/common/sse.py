"""Server-Sent Events: writing a stream from aiohttp handlers and reading one as a client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from rbee.common.errors import CORRELATION_HEADER, correlation_id_of

DONE = "[DONE]"


class StreamTruncated(Exception):
    """The peer closed an event stream before its `[DONE]` line."""


async def open_stream(request: web.Request, status: int = 200) -> web.StreamResponse:
    """Prepare an SSE response (headers sent at once, nothing buffered)."""
    response = web.StreamResponse(
        status=status,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            CORRELATION_HEADER: correlation_id_of(request),
        },
    )
    await response.prepare(request)
    return response


async def send_data(response: web.StreamResponse, payload: dict[str, Any] | str) -> None:
    """Write one `data:` event; a dict is sent as compact JSON."""
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    await response.write(f"data: {text}\n\n".encode())


async def send_comment(response: web.StreamResponse, text: str) -> None:
    """Write an SSE comment line, which clients ignore."""
    await response.write(f": {text}\n\n".encode())


async def iter_data(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """Yield each `data:` payload of an SSE response as soon as its line arrives."""
    while True:
        line = await response.content.readline()
        if not line:
            return
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        if text.startswith("data:"):
            yield text[5:].lstrip(" ")


async def iter_events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Yield the JSON events of a native token stream until `[DONE]`."""
    async for data in iter_data(response):
        if data == DONE:
            return
        yield json.loads(data)
    raise StreamTruncated("event stream ended without [DONE]")
