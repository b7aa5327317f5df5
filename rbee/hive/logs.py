"""`GET /v1/logs`: the hive's own log and its workers' logs, tailed and optionally followed.

The stream is SSE: one `{"source": "hive" | <worker id>, "line": …}` event per line, the last
`lines` lines of each file first, then (with `follow=true`) new lines as they are written,
until the client leaves or the hive stops; without `follow` it ends with `[DONE]`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web

from rbee.common import sse
from rbee.common.daemon import STOP_REQUESTED
from rbee.common.errors import ApiError
from rbee.common.validation import check_choice, check_identifier, invalid
from rbee.hive.app_keys import SUPERVISOR

HIVE_SOURCE = "hive"
DEFAULT_LINES = 100
MAX_LINES = 10_000
FOLLOW_POLL_S = 0.25
_BLOCK = 64 * 1024


def parse_lines(value: str | None) -> int:
    """The `lines` query parameter: 0 to MAX_LINES, DEFAULT_LINES when absent."""
    if value is None:
        return DEFAULT_LINES
    if not value.isdigit() or not 0 <= int(value) <= MAX_LINES:
        raise invalid("lines", f"must be a whole number from 0 to {MAX_LINES}")
    return int(value)


def tail(path: Path, count: int) -> tuple[list[str], int]:
    """The last `count` lines of a file and the offset just past them (its size)."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        data = b""
        position = size
        while position > 0 and data.count(b"\n") <= count:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.decode(errors="replace").splitlines()
    return (lines[-count:] if count else []), size


def read_new(path: Path, offset: int) -> tuple[list[str], int]:
    """Complete lines written since `offset`, and the offset after them (0 after a truncation)."""
    size = path.stat().st_size
    if size < offset:
        offset = 0
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(size - offset)
    complete = data[: data.rfind(b"\n") + 1]
    return complete.decode(errors="replace").splitlines(), offset + len(complete)


def _sources(request: web.Request, only: str | None) -> dict[str, Path]:
    """Source name → log file: the hive's own log and each live worker's (or just `only`)."""
    supervisor = request.app[SUPERVISOR]
    folder = supervisor.settings.logs_dir
    names = [HIVE_SOURCE, *(record.worker_id for record in supervisor.list())] if only is None else [only]
    found = {name: folder / f"{name}.log" for name in names}
    return {name: path for name, path in found.items() if path.is_file()}


async def stream_logs(request: web.Request) -> web.StreamResponse:
    """GET /v1/logs?lines=N&follow=true|false&source=hive|<worker id>."""
    count = parse_lines(request.query.get("lines"))
    follow = check_choice("follow", request.query.get("follow", "false"), ("true", "false")) == "true"
    source = request.query.get("source")
    if source is not None:
        source = check_identifier("source", source)
    files = _sources(request, source)
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
        for name, path in _sources(request, source).items():
            lines, offsets[name] = await asyncio.to_thread(read_new, path, offsets.get(name, 0))
            for line in lines:
                await sse.send_data(response, {"source": name, "line": line})
    await sse.send_data(response, sse.DONE)
    return response
