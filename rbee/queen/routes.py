"""HTTP handlers of the queen: the native task API and the OpenAI-compatible API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from aiohttp import web

from rbee import __version__
from rbee.common import deadlines, sse
from rbee.common.deadlines import Deadline
from rbee.common.errors import ApiError, correlation_id_of, read_json_object
from rbee.common.metrics import METRICS_PATH, metrics_handler
from rbee.common.tunables import Timings
from rbee.common.validation import (
    BACKENDS,
    check_choice,
    check_http_url,
    check_identifier,
    check_model_ref,
    check_node_name,
    parse_prompt,
    parse_sampling,
)
from rbee.queen import cluster_status, node_logs, openapi, ui
from rbee.queen.dispatch import Dispatcher, Task
from rbee.queen.hive_registry import HiveRegistry
from rbee.queen.openai_format import OpenAIRequest, OpenAIResponder, parse_request
from rbee.queen.placement import Placement
from rbee.queen.registry_routes import add_registry_routes
from rbee.queen.worker_registry import WorkerRegistry

DISPATCHER = web.AppKey("dispatcher", Dispatcher)
PLACEMENT = web.AppKey("placement", Placement)
REGISTRY = web.AppKey("registry", WorkerRegistry)
HIVES = web.AppKey("hives", HiveRegistry)
TIMINGS = web.AppKey("timings", Timings)
BUILTIN_MODELS = ("default",)


async def health(request: web.Request) -> web.Response:
    """Liveness, public."""
    return web.json_response({"status": "alive", "version": __version__})


async def openapi_document(request: web.Request) -> web.Response:
    """GET /openapi.json: the API description (for clients and schemathesis)."""
    return web.json_response(openapi.document())


async def create_task(request: web.Request) -> web.StreamResponse:
    """POST /v2/tasks: run a prompt and stream native events."""
    body = await read_json_object(request)
    node = check_node_name("node", body["node"]) if body.get("node") is not None else None
    model = check_model_ref(body.get("model"))
    worker_body = {"prompt": parse_prompt(body), **parse_sampling(body).to_wire()}
    dispatcher = request.app[DISPATCHER]
    task_id = dispatcher.new_task_id()
    deadline = _deadline(request)
    backend = check_choice("backend", body.get("backend", "cpu"), BACKENDS)
    task = Task(model, task_id, worker_body, correlation_id_of(request), deadline, backend, node)
    run = dispatcher.run(task)
    async with aclosing(run) as events:
        first = await _first_event(events)
        response = await sse.open_stream(request)
        async for event in _chain(first, events):
            if event.get("type") == "started":
                event = {**event, "task_id": task_id, "model": model}
            await sse.send_data(response, event)
        await sse.send_data(response, sse.DONE)
    return response


def _deadline(request: web.Request) -> Deadline:
    """The request's deadline (a default one when absent), refused once passed."""
    deadline = deadlines.from_request(request, request.app[TIMINGS].request_deadline_s)
    assert deadline is not None
    deadline.check()
    return deadline


async def _first_event(events: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """The first event of a task; failures to start surface here as ApiError."""
    first = await anext(events, None)
    if first is None:
        raise ApiError(503, "WORKER_CRASHED", "the worker ended the task without an answer")
    return first


async def _chain(
    first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    yield first
    async for event in rest:
        yield event


async def cancel_task(request: web.Request) -> web.Response:
    """DELETE /v2/tasks/{task_id}: stop a running task (204 also for finished ones)."""
    task_id = check_identifier("task_id", request.match_info["task_id"])
    await request.app[DISPATCHER].cancel(task_id)
    return web.Response(status=204)


async def list_workers(request: web.Request) -> web.Response:
    """GET /v2/workers/list: the queen's view of every worker, as heartbeats last told it, and of
    the requests waiting in its admission queue."""
    registry = request.app[REGISTRY]
    hives = request.app[HIVES]
    workers = [
        {**w.to_wire(registry.in_flight(w.worker_id)), "stale": hives.is_stale(w.hive_url)}
        for w in registry.all()
    ]
    now = time.monotonic()
    admission = request.app[PLACEMENT].admission
    return web.json_response({
        "workers": workers,
        "hives": [hive.to_wire(now) for hive in hives.all()],
        "queue": {"waiting": admission.depth(), "by_model": admission.by_model()},
    })


async def shutdown_worker(request: web.Request) -> web.Response:
    """POST /v2/workers/shutdown: drain one worker and stop it (202)."""
    body = await read_json_object(request)
    worker_id = check_identifier("worker_id", body.get("worker_id"))
    record = await request.app[PLACEMENT].stop_worker(worker_id)
    return web.json_response(record, status=202)


async def hive_heartbeat(request: web.Request) -> web.Response:
    """POST /v2/heartbeat: a hive reports itself and every worker it owns."""
    body = await read_json_object(request)
    hive_url = check_http_url("hive_url", body.get("hive_url"))
    workers = body.get("workers")
    if not isinstance(workers, list) or not all(_is_worker_report(w) for w in workers):
        raise ApiError(400, "INVALID_REQUEST", "'workers' must be a list of worker records")
    request.app[HIVES].heard_from(hive_url, str(body.get("version", "")))
    request.app[REGISTRY].sync(hive_url, workers)
    return web.json_response({"ok": True})


def _is_worker_report(item: Any) -> bool:
    keys = {"worker_id": str, "model": str, "url": str, "slots": int, "state": str}
    return isinstance(item, dict) and all(isinstance(item.get(k), t) for k, t in keys.items())


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
    deadline = _deadline(request)
    run = dispatcher.run(
        Task(parsed.model, dispatcher.new_task_id(), parsed.worker_body, correlation_id_of(request), deadline)
    )
    async with aclosing(run) as events:
        first = await _first_event(events)
        if parsed.stream:
            return await _openai_stream(request, responder, _chain(first, events))
        return await _openai_whole(responder, _chain(first, events))


async def _openai_stream(
    request: web.Request, responder: OpenAIResponder, events: AsyncIterator[dict[str, Any]]
) -> web.StreamResponse:
    response = await sse.open_stream(request)
    first = True
    async for event in events:
        kind = event.get("type")
        if kind == "started":
            responder.prompt_tokens = event.get("prompt_tokens", 0)
        elif kind == "token":
            await sse.send_data(response, responder.chunk(event["token"], first))
            first = False
        elif kind == "end":
            await sse.send_data(response, responder.final_chunk(event["stop_reason"]))
            if responder.request.include_usage:
                await sse.send_data(response, responder.usage_chunk(event["tokens_out"]))
        elif kind == "error":
            error = {"code": event["code"], "message": event["message"]}
            await sse.send_data(response, {"error": error})
    await sse.send_data(response, sse.DONE)
    return response


async def _openai_whole(
    responder: OpenAIResponder, events: AsyncIterator[dict[str, Any]]
) -> web.Response:
    parts: list[str] = []
    async for event in events:
        kind = event.get("type")
        if kind == "started":
            responder.prompt_tokens = event.get("prompt_tokens", 0)
        elif kind == "token":
            parts.append(event["token"])
        elif kind == "end":
            answer = responder.complete("".join(parts), event["stop_reason"], event["tokens_out"])
            return web.json_response(answer)
        elif kind == "error":
            raise ApiError(503, event["code"], event["message"])
    raise ApiError(503, "WORKER_CRASHED", "the worker stopped before finishing the answer")


PUBLIC_PATHS = frozenset({"/health"})
"""Routes that answer without a token (health checks for probes and load balancers)."""
INTERNAL_PATHS = frozenset({"/v2/heartbeat"})
"""Routes only daemons call (authenticated, but outside client rate limits)."""
QUIET_PATHS = frozenset({"/health", "/ready", METRICS_PATH, "/v2/heartbeat", "/ui/status"})
"""Routes probes, hives and the status page call all the time: their access lines are DEBUG."""


def add_routes(app: web.Application) -> None:
    """Register the queen's routes."""
    app.router.add_get("/health", health)
    app.router.add_get("/ready", cluster_status.ready)
    app.router.add_get(METRICS_PATH, metrics_handler)
    app.router.add_get("/openapi.json", openapi_document)
    app.router.add_get("/v2/status", cluster_status.status)
    app.router.add_get("/v2/logs", node_logs.node_logs)
    app.router.add_get("/ui", ui.page)
    app.router.add_get("/ui/status", ui.page_status)
    app.router.add_post("/v2/tasks", create_task)
    app.router.add_delete("/v2/tasks/{task_id}", cancel_task)
    app.router.add_get("/v2/workers/list", list_workers)
    app.router.add_post("/v2/workers/shutdown", shutdown_worker)
    app.router.add_post("/v2/heartbeat", hive_heartbeat)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    add_registry_routes(app)
