"""Wiring of the hive daemon."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from rbee.common.daemon import new_app
from rbee.hive.catalog import ModelCatalog
from rbee.hive.routes import CATALOG, SUPERVISOR, add_routes
from rbee.hive.supervisor import SupervisorSettings, WorkerSupervisor


@dataclass(frozen=True)
class HiveSettings:
    """What `rbee hive` was started with."""

    host: str
    port: int
    data_dir: Path
    worker_port_start: int
    ctx_size: int


def build_app(settings: HiveSettings) -> web.Application:
    """The hive application: catalog, supervisor and routes; workers stop with the hive."""
    app = new_app()
    app[CATALOG] = ModelCatalog(settings.data_dir)
    app[SUPERVISOR] = WorkerSupervisor(
        SupervisorSettings(
            hive_url=f"http://127.0.0.1:{settings.port}",
            logs_dir=settings.data_dir / "logs",
            worker_port_start=settings.worker_port_start,
            ctx_size=settings.ctx_size,
        )
    )
    add_routes(app)
    app.on_cleanup.append(_stop_workers)
    return app


async def _stop_workers(app: web.Application) -> None:
    await app[SUPERVISOR].stop_all()
