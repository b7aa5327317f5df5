"""Wiring of the worker daemon."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from rbee.common.auth import auth_middleware
from rbee.common.daemon import HEALTH, NOTIFIER, DaemonHealth, new_app, on_drain, on_reload, request_stop
from rbee.common.tunables import Timings
from rbee.worker.faults import Faults
from rbee.worker.hive_link import HiveLink
from rbee.worker.routes import PUBLIC_PATHS, RUNTIME, add_routes
from rbee.worker.runtime import WorkerRuntime, WorkerSettings


def build_app(settings: WorkerSettings, timings: Timings, faults: Faults) -> web.Application:
    """The worker application: routes, runtime, the loading task and the hive link."""
    app = new_app([auth_middleware(settings.keyring, PUBLIC_PATHS)])
    on_reload(app, settings.keyring.reload)
    runtime = WorkerRuntime(settings, timings, faults, lambda: request_stop(app), app[NOTIFIER])
    app[RUNTIME] = runtime
    app[HEALTH] = DaemonHealth(
        status=runtime.status_line,
        healthy=lambda: not runtime.decode_stalled(),
        ready_on_start=False,
    )
    add_routes(app)
    app.cleanup_ctx.append(_background)
    on_drain(app, runtime.drain)
    return app


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
