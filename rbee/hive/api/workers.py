"""`/v1/workers/*` and `/v1/heartbeat`: spawning, listing and stopping workers, and the
workers' own ready callbacks and heartbeats."""

from __future__ import annotations

from aiohttp import web

from rbee.common import log_context
from rbee.common.errors import read_json_object
from rbee.common.validation import (
    BACKENDS,
    MAX_SLOTS,
    check_bool,
    check_choice,
    check_device_id,
    check_identifier,
    check_int,
    check_model_ref,
    check_port,
    check_slots,
)
from rbee.hive.app_keys import CATALOG, SUPERVISOR

WORKER_REPORTED_STATES = ("idle", "busy", "draining")


async def spawn_worker(request: web.Request) -> web.Response:
    """Resolve the model and start a worker for it; answers at once with state `loading`."""
    body = await read_json_object(request)
    ref = check_model_ref(body.get("model"))
    slots = check_slots("slots", body.get("slots", 1))
    backend = check_choice("backend", body.get("backend", "cpu"), BACKENDS)
    device = body.get("device")
    device = None if device is None else check_device_id("device", device)
    model = await request.app[CATALOG].resolve(ref)
    record = await request.app[SUPERVISOR].spawn(model, slots, backend, device)
    return web.json_response(record.to_wire(), status=202)


async def list_workers(request: web.Request) -> web.Response:
    """Every live worker with its state."""
    workers = [record.to_wire() for record in request.app[SUPERVISOR].list()]
    return web.json_response({"workers": workers})


async def worker_ready(request: web.Request) -> web.Response:
    """A worker reports that its model is loaded."""
    body = await read_json_object(request)
    worker_id = check_identifier("worker_id", body.get("worker_id"))
    port = check_port("port", body.get("port"))
    record = request.app[SUPERVISOR].report_ready(worker_id, port)
    return web.json_response(record.to_wire())


async def heartbeat(request: web.Request) -> web.Response:
    """A worker's periodic report: state, free slots, decode progress."""
    body = await read_json_object(request)
    worker_id = check_identifier("worker_id", body.get("worker_id"))
    log_context.bind(worker_id=worker_id)
    report = {
        "state": check_choice("state", body.get("state"), WORKER_REPORTED_STATES),
        "slots_free": check_int("slots_free", body.get("slots_free"), 0, MAX_SLOTS),
        "decode_stalled": check_bool("decode_stalled", body.get("decode_stalled", False)),
    }
    request.app[SUPERVISOR].heartbeat(worker_id, report)
    return web.json_response({"ok": True})


async def stop_worker(request: web.Request) -> web.Response:
    """Drain and stop one worker for good (no restart)."""
    body = await read_json_object(request)
    worker_id = check_identifier("worker_id", body.get("worker_id"))
    record = request.app[SUPERVISOR].stop(worker_id, "stop requested through the API")
    return web.json_response(record.to_wire(), status=202)
