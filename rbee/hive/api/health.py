"""`/v1/health` (liveness, public) and `/ready` (readiness) of the hive."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from rbee import __version__
from rbee.common.readiness import Check, ready_response
from rbee.hive.app_keys import CATALOG, SUPERVISOR


async def health(request: web.Request) -> web.Response:
    """Liveness and version, public."""
    workers = request.app[SUPERVISOR].list()
    return web.json_response(
        {"status": "alive", "version": __version__, "pid": os.getpid(), "workers": len(workers)}
    )


async def ready(request: web.Request) -> web.Response:
    """Readiness: the catalog's folders are writable and the supervisor is running (not draining)."""
    catalog, supervisor = request.app[CATALOG], request.app[SUPERVISOR]
    problem = await asyncio.to_thread(catalog.write_problem)
    checks = {
        "catalog_writable": Check(problem is None, problem or f"{catalog.models_dir} is writable"),
        "supervisor_running": Check(not supervisor.draining, "stopping every worker" if supervisor.draining
                                    else supervisor.status_line(), "DRAINING"),
    }
    return ready_response(request, checks)
