"""The native task API: `POST /v2/tasks` (stream native events), `DELETE /v2/tasks/{task_id}`."""

from __future__ import annotations

from contextlib import aclosing

from aiohttp import web

from rbee.common import sse, wire
from rbee.common.errors import ApiError, correlation_id_of, read_json_object
from rbee.common.native_stream import TokenRun
from rbee.common.validation import check_identifier
from rbee.common.wire_requests import TaskRequest
from rbee.queen.api.keys import BACKEND_POLICY, DISPATCHER, MODELS
from rbee.queen.api.task_stream import open_task_stream, request_deadline
from rbee.queen.keys.authentication import KEY, require_model
from rbee.queen.routing.dispatch import Task
from rbee.queen.routing.tenant import ANONYMOUS, TENANT


async def create_task(request: web.Request) -> web.StreamResponse:
    """POST /v2/tasks: run a prompt and stream native events (an alias's default sampling for each
    field the body omits)."""
    raw = await read_json_object(request)
    body = TaskRequest.parse(request.app[MODELS].with_defaults(raw.get("model"), raw))
    dispatcher = request.app[DISPATCHER]
    task_id = dispatcher.new_task_id()
    deadline = request_deadline(request)
    require_model(request, body.model)
    backend = request.app[BACKEND_POLICY].resolve(body.model, body.backend)
    task = Task(body.model, task_id, body.worker_body(), correlation_id_of(request), deadline, backend,
                body.node, parse_tokens=False, tenant=request.get(TENANT, ANONYMOUS))
    async with aclosing(dispatcher.run(task)) as run:
        response, events = await open_task_stream(request, run, _send_error)
        last = b""  # the final event goes out with [DONE] in one write: a cut stream never ends complete
        async for event in events:
            if last:
                await response.write(last)
                last = b""
            if isinstance(event, TokenRun):
                await response.write(event.frames)  # the worker's token events, as they came
            elif isinstance(event, wire.End | wire.Error):
                last = sse.data_frame(event)
            else:
                await sse.send_data(response, event)
        await response.write(last + sse.data_frame(sse.DONE))
    return response


async def _send_error(response: web.StreamResponse, err: ApiError) -> None:
    await sse.send_data(response, wire.Error(err.code, err.message))


async def cancel_task(request: web.Request) -> web.Response:
    """DELETE /v2/tasks/{task_id}: stop a running task (204 also for finished ones); a key without
    the admin scope may stop only its own tasks."""
    task_id = check_identifier("task_id", request.match_info["task_id"])
    key = request.get(KEY)
    await request.app[DISPATCHER].cancel(task_id, None if key is None or "admin" in key.scopes else key.name)
    return web.Response(status=204)
