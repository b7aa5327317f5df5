"""The OpenAI-compatible API: `/v1/models`, `/v1/models/{model}`, `/v1/chat/completions`,
`/v1/completions`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from aiohttp import web

from rbee.common import sse, wire
from rbee.common.errors import ApiError, correlation_id_of, read_json_object
from rbee.common.native_stream import TokenRun
from rbee.queen.api.keys import BACKEND_POLICY, DISPATCHER, PLACEMENT, REGISTRY
from rbee.queen.api.openai_format import OpenAIRequest, OpenAIResponder, parse_request
from rbee.queen.api.task_stream import TaskItem, open_task_stream, request_deadline, wait_header
from rbee.queen.keys.authentication import KEY, require_model
from rbee.queen.routing.dispatch import Task
from rbee.queen.routing.tenant import ANONYMOUS, TENANT

BUILTIN_MODELS = ("default",)


async def _model_names(request: web.Request) -> set[str]:
    """Every model the cluster knows (the built-in names, the nodes' catalogs, running workers)
    that the request's key may use."""
    placement = request.app[PLACEMENT]
    await placement.refresh()
    names = set(BUILTIN_MODELS)
    names.update(entry["name"] for entry in await placement.hive_models())
    names.update(worker.model for worker in request.app[REGISTRY].all())
    key = request.get(KEY)
    return names if key is None else {name for name in names if key.allows_model(name)}


def _model_object(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "rbee"}


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models in OpenAI's shape."""
    data = [_model_object(name) for name in sorted(await _model_names(request))]
    return web.json_response({"object": "list", "data": data})


async def retrieve_model(request: web.Request) -> web.Response:
    """GET /v1/models/{model}: one model of `/v1/models` in OpenAI's shape; 404 for others."""
    name = request.match_info["model"]
    if name not in await _model_names(request):
        raise ApiError(404, "MODEL_NOT_FOUND", "no model of that name is known to the cluster")
    return web.json_response(_model_object(name))


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
    require_model(request, parsed.model)
    backend = request.app[BACKEND_POLICY].resolve(parsed.model, parsed.backend)
    task = Task(parsed.model, dispatcher.new_task_id(), parsed.worker_body, correlation_id_of(request),
                deadline, backend, tenant=request.get(TENANT, ANONYMOUS))
    async with aclosing(dispatcher.run(task)) as run:
        if parsed.stream:
            return await _openai_stream(request, responder, run)
        return await _openai_whole(responder, run)


async def _openai_stream(
    request: web.Request, responder: OpenAIResponder, run: AsyncIterator[TaskItem]
) -> web.StreamResponse:
    async def send_error(response: web.StreamResponse, err: ApiError) -> None:
        await sse.send_data(response, err.body(correlation_id_of(request)))

    response, events = await open_task_stream(request, run, send_error)
    async for event in events:
        match event:
            case TokenRun():
                await response.write(b"".join(sse.data_frame(responder.chunk(token))
                                              for token in event.events()))
            case wire.ToolCall():
                for chunk in responder.tool_call_chunks(event):
                    await sse.send_data(response, chunk)
            case wire.Started():
                responder.prompt_tokens = event.prompt_tokens
            case wire.End():
                for chunk in responder.final_chunks(event):
                    await sse.send_data(response, chunk)
                if responder.request.include_usage:
                    await sse.send_data(response, responder.usage_chunk(event))
            case wire.Error():
                await send_error(response, event.to_api_error(503))
    await sse.send_data(response, sse.DONE)
    return response


async def _openai_whole(
    responder: OpenAIResponder, events: AsyncIterator[TaskItem]
) -> web.Response:
    headers: dict[str, str] = {}
    async for event in events:
        match event:
            case TokenRun():
                for token in event.events():
                    responder.add(token)
            case wire.ToolCall():
                responder.add_tool_call(event)
            case wire.Started():
                responder.prompt_tokens = event.prompt_tokens
                headers = wait_header(event)
            case wire.End():
                return web.json_response(responder.complete(event), headers=headers)
            case wire.Error():
                raise event.to_api_error(503)
    raise wire.worker_crashed().to_api_error(503)
