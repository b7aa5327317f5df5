"""HTTP handlers of the worker."""

from __future__ import annotations

from contextlib import aclosing

from aiohttp import web

from rbee.common import deadlines, log_context, sse, wire
from rbee.common.daemon import request_stop
from rbee.common.errors import ApiError, read_json_object
from rbee.common.metrics import METRICS_PATH, metrics_handler
from rbee.common.readiness import Check, ready_response
from rbee.common.validation import check_identifier
from rbee.worker.app_keys import RUNTIME, WORKER_METRICS
from rbee.worker.embedding_service import EmbeddingService
from rbee.worker.inference import InferenceService
from rbee.worker.runtime import Phase, WorkerRuntime


def _status(runtime: WorkerRuntime) -> dict[str, object]:
    service = runtime.service
    return {
        "worker_id": runtime.settings.worker_id,
        "state": runtime.state,
        "model_path": runtime.settings.model_path,
        "slots_total": runtime.settings.slots,
        "ctx_size": runtime.settings.ctx_size,
        "slots_free": service.pool.free if service else 0,
        "peak_busy_slots": service.peak_active if service else 0,
        "loading_progress": runtime.progress,
    }


def _service(runtime: WorkerRuntime) -> InferenceService | EmbeddingService:
    if runtime.phase is Phase.DRAINING:
        raise ApiError(503, "DRAINING", "this worker is shutting down", headers={"Retry-After": "1"})
    if runtime.service is None:
        raise ApiError(503, "NOT_READY", "the model is still loading", headers={"Retry-After": "1"})
    return runtime.service


def _generation(runtime: WorkerRuntime) -> InferenceService:
    service = _service(runtime)
    if not isinstance(service, InferenceService):
        raise ApiError(409, "WRONG_WORKER_KIND", "this worker serves embeddings, not generation",
                       {"embedding": True})
    return service


def _embeddings(runtime: WorkerRuntime) -> EmbeddingService:
    service = _service(runtime)
    if not isinstance(service, EmbeddingService):
        raise ApiError(409, "WRONG_WORKER_KIND", "this worker serves generation, not embeddings",
                       {"embedding": False})
    return service


async def health(request: web.Request) -> web.Response:
    """Liveness: answers while the process serves HTTP, whatever the model's state."""
    return web.json_response({"status": "alive", **_status(request.app[RUNTIME])})


async def ready(request: web.Request) -> web.Response:
    """Readiness (`/ready`, also `/v1/ready`): the model is loaded, the worker is not draining,
    and a slot can take a request now (free, with the decode loop making progress)."""
    runtime = request.app[RUNTIME]
    service = runtime.service
    free = service.pool.free if service else 0
    stalled = runtime.decode_stalled()
    checks = {
        "model_loaded": Check(service is not None, f"{runtime.state}, {runtime.progress:.0%} loaded"),
        "accepting": Check(runtime.phase is not Phase.DRAINING, f"phase {runtime.phase}", "DRAINING"),
        "slot_usable": Check(free > 0 and not stalled, "the decode loop is stalled" if stalled
                             else f"{free} of {runtime.settings.slots} slots free"),
    }
    return ready_response(request, checks, _status(runtime))


async def loading_progress(request: web.Request) -> web.StreamResponse:
    """SSE of loading progress until the worker is ready (or failed)."""
    runtime = request.app[RUNTIME]
    response = await sse.open_stream(request)
    while True:
        changed = runtime.changed
        await sse.send_data(response, wire.LoadingProgress(runtime.state, runtime.progress))
        if runtime.phase is not Phase.LOADING:
            break
        await changed.wait()
    final = wire.LoadingReady() if runtime.phase is Phase.READY else wire.LoadingFailed()
    await sse.send_data(response, final)
    await sse.send_data(response, sse.DONE)
    return response


def _arrived(request: web.Request) -> deadlines.Deadline | None:
    """A work request's deadline (504 when already past), after the request faults ran."""
    request.app[RUNTIME].faults.on_request()
    deadline = deadlines.from_request(request)
    if deadline is not None:
        deadline.check()
    return deadline


async def inference(request: web.Request) -> web.StreamResponse:
    """Run one generation and stream its native events."""
    deadline = _arrived(request)
    service = _generation(request.app[RUNTIME])
    task = service.admit(await read_json_object(request), deadline)
    log_context.bind(task_id=task.task_id)
    try:
        events = request.app[WORKER_METRICS].observe(service.stream(task))
        response = await sse.open_stream(request)
        async with aclosing(events):
            async for event in events:
                await sse.send_data(response, event)
        await sse.send_data(response, sse.DONE)
    finally:
        task.cancel.set()
    return response


async def embeddings(request: web.Request) -> web.Response:
    """Embed the request's inputs: one L2-normalised vector each, in order."""
    deadline = _arrived(request)
    service = _embeddings(request.app[RUNTIME])
    result = await service.embed(await read_json_object(request), deadline)
    return web.json_response(result.model_dump())


async def cancel_inference(request: web.Request) -> web.Response:
    """Stop a running generation; its slot frees as soon as the thread returns."""
    task_id = check_identifier("task_id", request.match_info["task_id"])
    service = request.app[RUNTIME].service
    if service is None or not service.cancel(task_id):
        raise ApiError(404, "TASK_NOT_FOUND", "no running task has this id")
    return web.Response(status=204)


async def admin_shutdown(request: web.Request) -> web.Response:
    """Stop this worker gracefully, as SIGTERM would."""
    request_stop(request.app)
    return web.json_response({"status": "draining"}, status=202)


PUBLIC_PATHS = frozenset({"/health"})
"""Routes that answer without a token (health checks for probes and load balancers)."""
QUIET_PATHS = frozenset({"/health", "/ready", "/v1/ready", METRICS_PATH})
"""Routes probes call all the time: their access lines are DEBUG."""


def add_routes(app: web.Application) -> None:
    """Register the worker's routes."""
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/v1/ready", ready)
    app.router.add_get(METRICS_PATH, metrics_handler)
    app.router.add_get("/v1/loading/progress", loading_progress)
    app.router.add_post("/v1/inference", inference)
    app.router.add_delete("/v1/inference/{task_id}", cancel_inference)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/admin/shutdown", admin_shutdown)
