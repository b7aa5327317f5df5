"""The queen's route table, and which of its paths are public, internal or quiet."""

from __future__ import annotations

from aiohttp import web

from rbee.common.metrics import METRICS_PATH, metrics_handler
from rbee.queen.api import (
    embeddings,
    key_routes,
    logs,
    model_routes,
    nodes,
    openai,
    openapi,
    scrape,
    status,
    tasks,
    ui,
    workers,
)

PUBLIC_PATHS = frozenset({"/health"})
"""Routes that answer without a token (health checks for probes and load balancers)."""
READY_PATH = "/ready"
"""Readiness: public too with `ready_public` (`--ready-public`), for a load balancer's probe."""
INTERNAL_PATHS = frozenset({"/v2/heartbeat"})
"""Routes only daemons call (authenticated, but outside client rate limits)."""
QUIET_PATHS = frozenset({"/health", "/ready", METRICS_PATH, "/v2/heartbeat", "/ui/status",
                         scrape.TARGETS_PATH})
"""Routes probes, hives and the status page call all the time: their access lines are DEBUG."""


def add_routes(app: web.Application) -> None:
    """Register the queen's routes."""
    app.router.add_get("/health", status.health)
    app.router.add_get(READY_PATH, status.ready)
    app.router.add_get(METRICS_PATH, metrics_handler)
    app.router.add_get("/openapi.json", openapi.openapi_document)
    app.router.add_get("/v2/status", status.status)
    app.router.add_get("/v2/logs", logs.node_logs)
    app.router.add_get(scrape.TARGETS_PATH, scrape.prometheus_targets)
    app.router.add_get("/ui", ui.page)
    app.router.add_get("/ui/status", ui.page_status)
    app.router.add_post("/v2/tasks", tasks.create_task)
    app.router.add_delete("/v2/tasks/{task_id}", tasks.cancel_task)
    app.router.add_get("/v2/workers/list", workers.list_workers)
    app.router.add_post("/v2/workers/shutdown", workers.shutdown_worker)
    app.router.add_post("/v2/heartbeat", workers.hive_heartbeat)
    app.router.add_get("/v1/models", openai.list_models)
    app.router.add_get("/v1/models/{model:.+}", openai.retrieve_model)
    app.router.add_post("/v1/chat/completions", openai.chat_completions)
    app.router.add_post("/v1/completions", openai.completions)
    app.router.add_post("/v1/embeddings", embeddings.embeddings)
    app.router.add_post("/v2/models/pull", model_routes.pull_model)
    app.router.add_get("/v2/models/show", model_routes.show_model)
    app.router.add_post("/v2/registry/beehives/add", nodes.add_node)
    app.router.add_get("/v2/registry/beehives/list", nodes.list_nodes)
    app.router.add_post("/v2/registry/beehives/remove", nodes.remove_node)
    app.router.add_post("/v2/keys", key_routes.create_key)
    app.router.add_get("/v2/keys", key_routes.list_keys)
    app.router.add_get("/v2/keys/usage", key_routes.key_usage)
    app.router.add_delete("/v2/keys/{name}", key_routes.revoke_key)
