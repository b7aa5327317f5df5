"""The hive's route table, and which of its routes are public or quiet."""

from __future__ import annotations

from aiohttp import web

from rbee.common.metrics import METRICS_PATH, metrics_handler
from rbee.hive.api import downloads, health, logs, models, node, workers

PUBLIC_PATHS = frozenset({"/v1/health", "/health"})
"""Routes that answer without a token (health checks for probes and load balancers)."""
QUIET_PATHS = frozenset({"/v1/health", "/health", "/ready", METRICS_PATH, "/v1/heartbeat",
                         "/v1/workers/ready", "/v1/workers/list"})
"""Routes probes, workers and the queen call all the time: their access lines are DEBUG."""


def add_routes(app: web.Application) -> None:
    """Register the hive's routes."""
    app.router.add_get("/v1/health", health.health)
    app.router.add_get("/health", health.health)
    app.router.add_get("/ready", health.ready)
    app.router.add_get(METRICS_PATH, metrics_handler)
    app.router.add_get("/v1/logs", logs.stream_logs)
    app.router.add_post("/v1/workers/spawn", workers.spawn_worker)
    app.router.add_get("/v1/workers/list", workers.list_workers)
    app.router.add_post("/v1/workers/ready", workers.worker_ready)
    app.router.add_post("/v1/heartbeat", workers.heartbeat)
    app.router.add_post("/v1/workers/stop", workers.stop_worker)
    app.router.add_get("/v1/models/list", models.list_models)
    app.router.add_get("/v1/models/show", models.show_model)
    app.router.add_get("/v1/backends", node.list_backends)
    app.router.add_get("/v1/resources", node.list_resources)
    app.router.add_post("/v1/models/download", downloads.start_download)
    app.router.add_get(downloads.PROGRESS_PATH, downloads.download_progress)
    app.router.add_post("/v1/models/remove", models.remove_model)
