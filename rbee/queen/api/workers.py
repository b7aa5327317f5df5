"""Workers and hives: `/v2/workers/{list,shutdown}` and the hives' `POST /v2/heartbeat`."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from rbee.common.errors import ApiError, read_json_object
from rbee.common.validation import check_http_url, check_identifier
from rbee.queen.api.keys import HIVES, PLACEMENT, REGISTRY


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
