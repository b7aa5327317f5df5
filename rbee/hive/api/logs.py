"""`GET /v1/logs`: the hive's own log and its workers' logs, tailed and optionally followed.

The stream is SSE: one `{"source": "hive" | <worker id>, "line": …}` event per line, the last
`lines` lines of each file first, then (with `follow=true`) new lines as they are written,
until the client leaves or the hive stops; without `follow` it ends with `[DONE]`.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from rbee.common import sse
from rbee.common.daemon import STOP_REQUESTED
from rbee.common.errors import ApiError
from rbee.common.validation import check_choice, check_identifier, invalid
from rbee.hive.app_keys import SUPERVISOR
from rbee.hive.logs import log_files, read_new, tail

DEFAULT_LINES = 100
MAX_LINES = 10_000
FOLLOW_POLL_S = 0.25


def parse_lines(value: str | None) -> int:
    """The `lines` query parameter: 0 to MAX_LINES, DEFAULT_LINES when absent."""
    if value is None:
        return DEFAULT_LINES
    if not value.isdigit() or not 0 <= int(value) <= MAX_LINES:
        raise invalid("lines", f"must be a whole number from 0 to {MAX_LINES}")
    return int(value)


async def stream_logs(request: web.Request) -> web.StreamResponse:
    """GET /v1/logs?lines=N&follow=true|false&source=hive|<worker id>."""
    count = parse_lines(request.query.get("lines"))
    follow = check_choice("follow", request.query.get("follow", "false"), ("true", "false")) == "true"
    source = request.query.get("source")
    if source is not None:
        source = check_identifier("source", source)
    supervisor = request.app[SUPERVISOR]
    files = log_files(supervisor, source)
    if source is not None and not files:
        raise ApiError(404, "LOG_NOT_FOUND", "this hive has no log of that name", {"source": source})
    response = await sse.open_stream(request)
    offsets: dict[str, int] = {}
    for name, path in files.items():
        lines, offsets[name] = await asyncio.to_thread(tail, path, count)
        for line in lines:
            await sse.send_data(response, {"source": name, "line": line})
    stop = request.app[STOP_REQUESTED]
    while follow and not stop.is_set():
        await asyncio.sleep(FOLLOW_POLL_S)
        for name, path in log_files(supervisor, source).items():
            lines, offsets[name] = await asyncio.to_thread(read_new, path, offsets.get(name, 0))
            for line in lines:
                await sse.send_data(response, {"source": name, "line": line})
    await sse.send_data(response, sse.DONE)
    return response
