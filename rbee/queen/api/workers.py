"""Workers and hives: `/v2/workers/{list,shutdown}` and the hives' `POST /v2/heartbeat`."""

from __future__ import annotations

import time

from aiohttp import web

from rbee.common.errors import read_json_object
from rbee.common.wire_requests import HiveHeartbeat, WorkerRef
from rbee.queen.api.keys import HIVES, PLACEMENT, REGISTRY, STATUS
from rbee.queen.keys.authentication import KEY
from rbee.queen.keys.node_keys import check_reporter


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
    body = WorkerRef.parse(await read_json_object(request))
    record = await request.app[PLACEMENT].stop_worker(body.worker_id)
    return web.json_response(record, status=202)


async def hive_heartbeat(request: web.Request) -> web.Response:
    """POST /v2/heartbeat: a hive reports itself and every worker it owns."""
    body = HiveHeartbeat.parse(await read_json_object(request))
    hives = ((handle.name, handle.client.base_url) for handle in request.app[STATUS].directory.in_use())
    check_reporter(request.get(KEY), body.hive_url, hives)
    request.app[HIVES].heard_from(body.hive_url, body.version)
    request.app[REGISTRY].sync(body.hive_url, [worker.model_dump() for worker in body.workers])
    return web.json_response({"ok": True})
