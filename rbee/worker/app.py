"""Wiring of the worker daemon."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from rbee.common.daemon import new_app
from rbee.worker.routes import RUNTIME, add_routes
from rbee.worker.runtime import WorkerRuntime, WorkerSettings


def build_app(settings: WorkerSettings) -> web.Application:
    """The worker application: routes, runtime, and the loading task."""
    app = new_app()
    app[RUNTIME] = WorkerRuntime(settings)
    add_routes(app)
    app.cleanup_ctx.append(_loading)
    app.on_shutdown.append(_stop_generations)
    return app


async def _loading(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[RUNTIME].load())
    yield
    task.cancel()


async def _stop_generations(app: web.Application) -> None:
    app[RUNTIME].shutdown()
