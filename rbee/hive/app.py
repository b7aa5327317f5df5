"""Wiring of the hive daemon."""

from __future__ import annotations

import asyncio

from aiohttp import web

from rbee.common.audit import AuditLog
from rbee.common.auth import auth_middleware, reload_tokens
from rbee.common.daemon import HEALTH, DaemonHealth, new_app, on_drain, on_reload
from rbee.common.metrics import METRICS, DaemonMetrics, observe_requests, public_paths
from rbee.common.tunables import Timings
from rbee.hive.api.routes import PUBLIC_PATHS, QUIET_PATHS, add_routes
from rbee.hive.app_keys import CATALOG, DOWNLOADER, SUPERVISOR
from rbee.hive.catalog import ModelCatalog
from rbee.hive.downloads import Downloader
from rbee.hive.metrics import HiveMetrics
from rbee.hive.queen_link import heartbeats
from rbee.hive.settings import HiveSettings
from rbee.hive.supervisor import WorkerSupervisor


def build_app(settings: HiveSettings, timings: Timings, audit_log: AuditLog) -> web.Application:
    """The hive application: catalog, supervisor, routes, metrics, heartbeats to the queen."""
    metrics = DaemonMetrics("hive")
    hive_metrics = HiveMetrics(metrics)
    audit = hive_metrics.tap(audit_log.append)
    app = new_app([
        observe_requests(metrics, QUIET_PATHS),
        auth_middleware(settings.keyring, public_paths(PUBLIC_PATHS, settings.metrics_public), audit),
    ])
    app[METRICS] = metrics
    app.on_cleanup.append(lambda _: asyncio.to_thread(audit_log.close))
    downloader = Downloader(settings.data_dir / "models", settings.downloads)
    app.on_cleanup.append(lambda _: downloader.close())
    app[CATALOG] = ModelCatalog(settings.data_dir, downloader)
    supervisor = WorkerSupervisor(settings.supervision, timings, audit)
    app.cleanup_ctx.append(lambda _: supervisor.leftovers_stopped())
    app[SUPERVISOR] = supervisor
    hive_metrics.watch(supervisor, downloader)
    on_reload(app, reload_tokens(settings.keyring, audit))
    on_reload(app, supervisor.reload_all)
    app[HEALTH] = DaemonHealth(status=supervisor.status_line)
    add_routes(app)
    app[DOWNLOADER] = downloader
    on_drain(app, lambda: supervisor.stop_all("hive stopping"))
    if settings.queen_url:
        queen_url = settings.queen_url
        app.cleanup_ctx.append(lambda _: heartbeats(
            queen_url, settings.url, supervisor, lambda: settings.keyring.headers_for("queen")
        ))
    return app
