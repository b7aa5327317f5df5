"""`/v1/backends` and `/v1/resources`: what this node can run on and what it has free."""

from __future__ import annotations

import asyncio

from aiohttp import web

from rbee.hive import backends, preflight
from rbee.hive.app_keys import SUPERVISOR


async def list_backends(request: web.Request) -> web.Response:
    """GET /v1/backends: what the engine build can run on this node."""
    found = await asyncio.to_thread(backends.detect)
    return web.json_response({"backends": [backend.to_wire() for backend in found]})


async def list_resources(request: web.Request) -> web.Response:
    """GET /v1/resources: RAM, disk, CPUs and GPUs of this node now, each GPU with the memory
    rbee's workers booked on it and what is still available."""
    supervisor = request.app[SUPERVISOR]
    rooms = await asyncio.to_thread(supervisor.ledger.rooms)
    data_dir = supervisor.settings.data_dir
    return web.json_response(await asyncio.to_thread(preflight.resources, data_dir, rooms))
