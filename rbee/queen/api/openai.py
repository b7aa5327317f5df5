"""The OpenAI-compatible API: `/v1/models`, `/v1/models/{model}`, `/v1/chat/completions`,
`/v1/completions`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from aiohttp import web

from rbee.common import sse, wire
from rbee.common.errors import ApiError, correlation_id_of, read_json_object
from rbee.common.native_stream import TokenRun
from rbee.queen.api.keys import BACKEND_POLICY, DISPATCHER, MODELS, PLACEMENT, REGISTRY, TIMINGS
from rbee.queen.api.openai_format import OpenAIRequest, OpenAIResponder, parse_request
from rbee.queen.api.task_stream import TaskItem, open_task_stream, request_deadline, wait_header
from rbee.queen.keys.authentication import KEY, require_model
from rbee.queen.routing.dispatch import Task
from rbee.queen.routing.tenant import ANONYMOUS, TENANT


async def _runnable_models(request: web.Request) -> dict[str, dict[str, object]]:
    """The `/v1/models` object of every model the cluster can run now that the request's key may
    use: those in a node's catalog or that a node installs with no download (`default` when its
    package is there), those of running workers, and the model table's aliases whose model can run."""
    placement = request.app[PLACEMENT]
    await placement.refresh()
    catalogs = await placement.hive_catalogs()
    known = {entry["name"] for answer in catalogs for entry in answer.get("models", [])}
    known.update(name for answer in catalogs for name in answer.get("installable", []))
    known.update(worker.model for worker in request.app[REGISTRY].all())
    objects = {name: _model_object(name) for name in known}
    table, policy = request.app[MODELS], request.app[BACKEND_POLICY]
    keep_alive_s = request.app[TIMINGS].idle_unload_s
    for alias in table.runnable(known):
        objects[alias] = table.describe(alias, policy.resolve(alias), keep_alive_s)
    key = request.get(KEY)
    return {name: body for name, body in objects.items() if key is None or key.allows_model(name)}


def _model_object(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "rbee"}


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models in OpenAI's shape (aliases with their settings)."""
    models = await _runnable_models(request)
    return web.json_response({"object": "list", "data": [models[name] for name in sorted(models)]})


async def retrieve_model(request: web.Request) -> web.Response:
    """GET /v1/models/{model}: one model of `/v1/models` in OpenAI's shape; 404 for others."""
    model = (await _runnable_models(request)).get(request.match_info["model"])
    if model is None:
        raise ApiError(404, "MODEL_NOT_FOUND", "no model of that name can run on the cluster")
    return web.json_response(model)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions."""
    return await _openai(request, parse_request(_with_defaults(request, await read_json_object(request)),
                                                chat=True))


async def completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/completions."""
    return await _openai(request, parse_request(_with_defaults(request, await read_json_object(request)),
                                                chat=False))


def _with_defaults(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    """The body with its alias's default sampling for each field it omits."""
    return request.app[MODELS].with_defaults(body.get("model"), body)


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
