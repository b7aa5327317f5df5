"""HTTP handlers of the hive."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from aiohttp import web

from rbee import __version__
from rbee.common import log_context
from rbee.common.errors import read_json_object
from rbee.common.metrics import METRICS_PATH, metrics_handler
from rbee.common.readiness import Check, ready_response
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
from rbee.hive import backends, preflight
from rbee.hive.app_keys import CATALOG, SUPERVISOR
from rbee.hive.download_routes import add_download_routes
from rbee.hive.logs import stream_logs

WORKER_REPORTED_STATES = ("idle", "busy", "draining")


async def health(request: web.Request) -> web.Response:
    """Liveness and version, public."""
    workers = request.app[SUPERVISOR].list()
    return web.json_response(
        {"status": "alive", "version": __version__, "pid": os.getpid(), "workers": len(workers)}
    )


def _unwritable(folder: Path) -> str | None:
    """Why a file cannot be created in `folder` and its parent, or None when it can."""
    for place in (folder, folder.parent):
        try:
            with tempfile.TemporaryFile(dir=place):
                pass
        except OSError as exc:
            return f"cannot write in {place}: {exc.strerror or exc}"
    return None


async def ready(request: web.Request) -> web.Response:
    """Readiness: the catalog's folders are writable and the supervisor is running (not draining)."""
    catalog, supervisor = request.app[CATALOG], request.app[SUPERVISOR]
    problem = await asyncio.to_thread(_unwritable, catalog.models_dir)
    checks = {
        "catalog_writable": Check(problem is None, problem or f"{catalog.models_dir} is writable"),
        "supervisor_running": Check(not supervisor.draining, "stopping every worker" if supervisor.draining
                                    else supervisor.status_line(), "DRAINING"),
    }
    return ready_response(request, checks)


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


async def list_backends(request: web.Request) -> web.Response:
    """GET /v1/backends: what the engine build can run on this node."""
    found = await asyncio.to_thread(backends.detect)
    return web.json_response({"backends": [backend.to_wire() for backend in found]})


async def list_resources(request: web.Request) -> web.Response:
    """GET /v1/resources: RAM, disk, CPUs and GPUs of this node now."""
    data_dir = request.app[SUPERVISOR].settings.data_dir
    return web.json_response(await asyncio.to_thread(preflight.resources, data_dir))


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


async def list_models(request: web.Request) -> web.Response:
    """Models in this hive's catalog."""
    models = [entry.to_wire() for entry in await request.app[CATALOG].list()]
    return web.json_response({"models": models})


PUBLIC_PATHS = frozenset({"/v1/health"})
"""Routes that answer without a token (health checks for probes and load balancers)."""
QUIET_PATHS = frozenset({"/v1/health", "/ready", METRICS_PATH, "/v1/heartbeat", "/v1/workers/ready",
                         "/v1/workers/list"})
"""Routes probes, workers and the queen call all the time: their access lines are DEBUG."""


def add_routes(app: web.Application) -> None:
    """Register the hive's routes."""
    app.router.add_get("/v1/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get(METRICS_PATH, metrics_handler)
    app.router.add_get("/v1/logs", stream_logs)
    app.router.add_post("/v1/workers/spawn", spawn_worker)
    app.router.add_get("/v1/workers/list", list_workers)
    app.router.add_post("/v1/workers/ready", worker_ready)
    app.router.add_post("/v1/heartbeat", heartbeat)
    app.router.add_post("/v1/workers/stop", stop_worker)
    app.router.add_get("/v1/models/list", list_models)
    app.router.add_get("/v1/backends", list_backends)
    app.router.add_get("/v1/resources", list_resources)
    add_download_routes(app)
