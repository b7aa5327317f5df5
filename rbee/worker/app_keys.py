"""The worker application's shared state, by key (set in app.py, read by the route modules)."""

from __future__ import annotations

from aiohttp import web

from rbee.worker.metrics import WorkerMetrics
from rbee.worker.runtime import WorkerRuntime

RUNTIME = web.AppKey("runtime", WorkerRuntime)
WORKER_METRICS = web.AppKey("worker_metrics", WorkerMetrics)
