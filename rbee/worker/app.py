"""Wiring of the worker daemon."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from rbee.common.auth import auth_middleware
from rbee.common.daemon import HEALTH, NOTIFIER, DaemonHealth, new_app, on_drain, on_reload, request_stop
from rbee.common.exit_codes import WORKER_LOAD_FAILED
from rbee.common.metrics import METRICS, DaemonMetrics, observe_requests, public_paths
from rbee.common.tunables import Timings
from rbee.worker.app_keys import RUNTIME, WORKER_METRICS
from rbee.worker.hive_link import HiveLink
from rbee.worker.metrics import WorkerMetrics
from rbee.worker.routes import PUBLIC_PATHS, QUIET_PATHS, add_routes
from rbee.worker.runtime import Phase, WorkerRuntime
from rbee.worker.settings import WorkerSettings


def build_app(settings: WorkerSettings, timings: Timings) -> web.Application:
    """The worker application: routes, runtime, metrics, the loading task and the hive link."""
    metrics = DaemonMetrics("worker")
    app = new_app([
        observe_requests(metrics, QUIET_PATHS),
        auth_middleware(settings.keyring, public_paths(PUBLIC_PATHS, settings.metrics_public)),
    ])
    on_reload(app, settings.keyring.reload)
    runtime = WorkerRuntime(settings, timings, settings.faults, lambda: request_stop(app), app[NOTIFIER])
    app[RUNTIME] = runtime
    app[METRICS] = metrics
    app[WORKER_METRICS] = WorkerMetrics(metrics, runtime)
    app[HEALTH] = DaemonHealth(
        status=runtime.status_line,
        healthy=lambda: not runtime.decode_stalled(),
        ready_on_start=False,
    )
    add_routes(app)
    app.cleanup_ctx.append(_background)
    on_drain(app, runtime.drain)
    return app


def exit_code(app: web.Application) -> int:
    """The worker's exit status once it stopped serving: WORKER_LOAD_FAILED when its model did not load."""
    return WORKER_LOAD_FAILED if app[RUNTIME].phase is Phase.FAILED else 0


async def _background(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    tasks = [
        asyncio.create_task(runtime.load(), name="load"),
        asyncio.create_task(HiveLink(runtime, session).run(), name="hive-link"),
    ]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await session.close()
