"""The OpenAI-compatible API: `/v1/models`, `/v1/chat/completions`, `/v1/completions`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from aiohttp import web

from rbee.common import sse, wire
from rbee.common.errors import correlation_id_of, read_json_object
from rbee.queen.api.keys import BACKEND_POLICY, DISPATCHER, PLACEMENT, REGISTRY
from rbee.queen.api.openai_format import OpenAIRequest, OpenAIResponder, parse_request
from rbee.queen.api.task_stream import request_deadline, started
from rbee.queen.routing.dispatch import Task

BUILTIN_MODELS = ("default",)


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models in OpenAI's shape."""
    placement = request.app[PLACEMENT]
    await placement.refresh()
    names = set(BUILTIN_MODELS)
    names.update(entry["name"] for entry in await placement.hive_models())
    names.update(worker.model for worker in request.app[REGISTRY].all())
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "rbee"} for n in sorted(names)]
    return web.json_response({"object": "list", "data": data})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions."""
    return await _openai(request, parse_request(await read_json_object(request), chat=True))


async def completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/completions."""
    return await _openai(request, parse_request(await read_json_object(request), chat=False))


async def _openai(request: web.Request, parsed: OpenAIRequest) -> web.StreamResponse:
    dispatcher = request.app[DISPATCHER]
    responder = OpenAIResponder(parsed)
    deadline = request_deadline(request)
    backend = request.app[BACKEND_POLICY].resolve(parsed.model, parsed.backend)
    task = Task(parsed.model, dispatcher.new_task_id(), parsed.worker_body, correlation_id_of(request),
                deadline, backend)
    async with aclosing(dispatcher.run(task)) as run:
        events = await started(run)
        if parsed.stream:
            return await _openai_stream(request, responder, events)
        return await _openai_whole(responder, events)


async def _openai_stream(
    request: web.Request, responder: OpenAIResponder, events: AsyncIterator[wire.TaskEvent]
) -> web.StreamResponse:
    response = await sse.open_stream(request)
    async for event in events:
        match event:
            case wire.Token():
                await sse.send_data(response, responder.chunk(event))
            case wire.ToolCall():
                for chunk in responder.tool_call_chunks(event):
                    await sse.send_data(response, chunk)
            case wire.Started():
                responder.prompt_tokens = event.prompt_tokens
            case wire.End():
                for chunk in responder.final_chunks(event):
                    await sse.send_data(response, chunk)
                if responder.request.include_usage:
                    await sse.send_data(response, responder.usage_chunk(event.tokens_out))
            case wire.Error():
                await sse.send_data(response, {"error": {"code": event.code, "message": event.message}})
    await sse.send_data(response, sse.DONE)
    return response


async def _openai_whole(
    responder: OpenAIResponder, events: AsyncIterator[wire.TaskEvent]
) -> web.Response:
    async for event in events:
        match event:
            case wire.Token():
                responder.add(event)
            case wire.ToolCall():
                responder.add_tool_call(event)
            case wire.Started():
                responder.prompt_tokens = event.prompt_tokens
            case wire.End():
                return web.json_response(responder.complete(event))
            case wire.Error():
                raise event.to_api_error(503)
    raise wire.worker_crashed().to_api_error(503)
