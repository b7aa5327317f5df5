"""What the task handlers share: the request's deadline, and relaying a task as an event stream
that opens at the task's first word, a wait note or its first event.

Failures before that word are HTTP error statuses (a full queue's 429, a refused prompt's 400,
a spawn that failed at once); once the stream is open, later failures are an error event in it.
The time the task waited for a worker's slot goes out with the headers (`WAIT_HEADER`): the
whole wait when the first word is an event, the wait so far when it is a note.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from rbee.common import deadlines, sse, wire
from rbee.common.deadlines import Deadline
from rbee.common.errors import ApiError
from rbee.common.metrics import METRICS
from rbee.common.native_stream import StreamItem
from rbee.queen.api.keys import TIMINGS
from rbee.queen.routing.waiting import WaitNote

WAIT_HEADER = "X-Rbee-Queue-Wait-Ms"
"""Milliseconds the request waited at the queen for a worker's slot (queue, spawn and load)."""
TaskItem = StreamItem | WaitNote
SendError = Callable[[web.StreamResponse, ApiError], Awaitable[None]]


def request_deadline(request: web.Request) -> Deadline:
    """The request's deadline (a default one when absent), refused once passed."""
    deadline = deadlines.from_request(request, request.app[TIMINGS].request_deadline_s)
    assert deadline is not None
    deadline.check()
    return deadline


def wait_header(item: TaskItem) -> dict[str, str]:
    """The wait header of a response whose first word is `item` (none without a measured wait)."""
    if isinstance(item, WaitNote):
        return {WAIT_HEADER: str(item.waited_ms)}
    if isinstance(item, wire.Started) and item.queue_wait_ms is not None:
        return {WAIT_HEADER: str(item.queue_wait_ms)}
    return {}


async def first_item(run: AsyncIterator[TaskItem]) -> TaskItem:
    """The task's first word; failures before it surface here as ApiError."""
    first = await anext(run, None)
    if first is None:
        raise wire.worker_crashed().to_api_error(503)
    return first


async def open_task_stream(
    request: web.Request, run: AsyncIterator[TaskItem], send_error: SendError
) -> tuple[web.StreamResponse, AsyncIterator[StreamItem]]:
    """Open the SSE response at `run`'s first word (failures before it raise ApiError) and
    return it with `run`'s events: its notes go out as comment lines on the way, and a failure
    after the stream opened through `send_error`, which ends the events."""
    first = await first_item(run)
    response = await sse.open_stream(request, headers=wait_header(first))
    return response, _events(request, response, first, run, send_error)


async def _events(
    request: web.Request, response: web.StreamResponse, first: TaskItem, run: AsyncIterator[TaskItem],
    send_error: SendError,
) -> AsyncIterator[StreamItem]:
    item: TaskItem | None = first
    try:
        while item is not None:
            if isinstance(item, WaitNote):
                await sse.send_comment(response, item.text)
            else:
                yield item
            item = await anext(run, None)
    except ApiError as err:
        request.app[METRICS].refused(err)  # as the middleware counts one answered as a status
        await send_error(response, err)
