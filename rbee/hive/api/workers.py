"""`/v1/workers/*` and `/v1/heartbeat`: spawning, listing and stopping workers, and the
workers' own ready callbacks and heartbeats."""

from __future__ import annotations

from aiohttp import web

from rbee.common import log_context
from rbee.common.errors import read_json_object
from rbee.common.wire_requests import SpawnRequest, WorkerHeartbeat, WorkerReady, WorkerRef
from rbee.hive.app_keys import CATALOG, SUPERVISOR


async def spawn_worker(request: web.Request) -> web.Response:
    """Resolve the model and start a worker for it; answers at once with state `loading`."""
    body = SpawnRequest.parse(await read_json_object(request))
    model = await request.app[CATALOG].resolve(body.model)
    record = await request.app[SUPERVISOR].spawn(model, body.slots, body.backend, body.device,
                                                 embedding=body.embedding, alias=body.alias,
                                                 tuning=body.tuning)
    return web.json_response(record.to_wire(), status=202)


async def list_workers(request: web.Request) -> web.Response:
    """Every live worker with its state."""
    workers = [record.to_wire() for record in request.app[SUPERVISOR].list()]
    return web.json_response({"workers": workers})


async def worker_ready(request: web.Request) -> web.Response:
    """A worker reports that its model is loaded."""
    body = WorkerReady.parse(await read_json_object(request))
    record = request.app[SUPERVISOR].report_ready(body.worker_id, body.port)
    return web.json_response(record.to_wire())


async def heartbeat(request: web.Request) -> web.Response:
    """A worker's periodic report: state, free slots, decode progress."""
    body = WorkerHeartbeat.parse(await read_json_object(request))
    log_context.bind(worker_id=body.worker_id)
    request.app[SUPERVISOR].heartbeat(body.worker_id, body.model_dump(exclude={"worker_id"}))
    return web.json_response({"ok": True})


async def stop_worker(request: web.Request) -> web.Response:
    """Drain and stop one worker for good (no restart)."""
    body = WorkerRef.parse(await read_json_object(request))
    record = request.app[SUPERVISOR].stop(body.worker_id, "stop requested through the API")
    return web.json_response(record.to_wire(), status=202)
