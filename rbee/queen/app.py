"""Wiring of the queen daemon."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from rbee.common.daemon import new_app
from rbee.queen.dispatch import Dispatcher
from rbee.queen.hive_client import HiveClient
from rbee.queen.local_hive import LocalHive
from rbee.queen.placement import Placement
from rbee.queen.routes import DISPATCHER, PLACEMENT, REGISTRY, add_routes
from rbee.queen.worker_registry import WorkerRegistry


@dataclass(frozen=True)
class QueenSettings:
    """What `rbee queen` (or `rbee up`) was started with."""

    host: str
    port: int
    hive_port: int
    data_dir: Path
    worker_port_start: int
    worker_slots: int
    worker_ctx_size: int
    start_hive: bool


async def build_app(settings: QueenSettings) -> web.Application:
    """The queen application, built inside the running loop that will serve it."""
    app = new_app()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=5))
    client = HiveClient(f"http://127.0.0.1:{settings.hive_port}", session)
    hive = LocalHive(client, settings)
    registry = WorkerRegistry()
    placement = Placement(hive, registry, settings.worker_slots)
    app[REGISTRY] = registry
    app[PLACEMENT] = placement
    app[DISPATCHER] = Dispatcher(placement, session)
    add_routes(app)
    app.cleanup_ctx.append(lambda _: _lifetime(hive, session, settings.start_hive))
    return app


async def _lifetime(
    hive: LocalHive, session: aiohttp.ClientSession, start_hive: bool
) -> AsyncIterator[None]:
    if start_hive:
        await hive.ensure_running()
    yield
    await hive.stop()
    await session.close()
