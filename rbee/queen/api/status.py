"""Health, readiness and the cluster's status: `/health`, `/ready`, `/v2/status`."""

from __future__ import annotations

from aiohttp import web

from rbee import __version__
from rbee.common.readiness import ready_response
from rbee.queen.api.keys import STATUS
from rbee.queen.cluster_status import readiness, snapshot


async def health(request: web.Request) -> web.Response:
    """Liveness, public."""
    return web.json_response({"status": "alive", "version": __version__})


async def ready(request: web.Request) -> web.Response:
    """GET /ready: 200 when every readiness check passes, else 503 naming the failing ones."""
    return ready_response(request, await readiness(request.app[STATUS]))


async def status(request: web.Request) -> web.Response:
    """GET /v2/status: nodes, hives, workers, models, throughput and queue depth."""
    return web.json_response(await snapshot(request.app[STATUS]))
