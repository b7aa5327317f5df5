"""What the task handlers share: the request's deadline and a task's first event."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from rbee.common import deadlines, wire
from rbee.common.deadlines import Deadline
from rbee.queen.api.keys import TIMINGS


def request_deadline(request: web.Request) -> Deadline:
    """The request's deadline (a default one when absent), refused once passed."""
    deadline = deadlines.from_request(request, request.app[TIMINGS].request_deadline_s)
    assert deadline is not None
    deadline.check()
    return deadline


async def started(events: AsyncIterator[wire.TaskEvent]) -> AsyncIterator[wire.TaskEvent]:
    """`events` once its first has arrived: failures to start surface here as ApiError, before
    a response is opened."""
    first = await anext(events, None)
    if first is None:
        raise wire.worker_crashed().to_api_error(503)
    return _chain(first, events)


async def _chain(first: wire.TaskEvent, rest: AsyncIterator[wire.TaskEvent]) -> AsyncIterator[wire.TaskEvent]:
    yield first
    async for event in rest:
        yield event
