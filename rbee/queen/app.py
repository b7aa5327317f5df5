"""Wiring of the queen daemon."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from rbee.common.audit import AuditLog
from rbee.common.auth import reload_tokens
from rbee.common.daemon import HEALTH, DaemonHealth, new_app, on_drain, on_reload
from rbee.common.log_context import forward_correlation
from rbee.common.metrics import METRICS, DaemonMetrics, observe_requests, public_paths
from rbee.common.tunables import Timings
from rbee.queen.api.keys import (
    AUDIT,
    BACKEND_POLICY,
    DISPATCHER,
    EMBEDDINGS,
    HIVE_RELAY,
    HIVES,
    KEY_USAGE,
    KEYS,
    MODELS,
    NODES,
    PLACEMENT,
    REGISTRY,
    STATUS,
    TIMINGS,
)
from rbee.queen.api.routes import INTERNAL_PATHS, PUBLIC_PATHS, QUIET_PATHS, READY_PATH, add_routes
from rbee.queen.cluster_status import StatusSources
from rbee.queen.keys.authentication import key_auth_middleware, key_limits
from rbee.queen.keys.limits import KeyLimiter
from rbee.queen.keys.node_keys import NodeKeys
from rbee.queen.keys.store import KeyStore
from rbee.queen.keys.usage import KeyUsage
from rbee.queen.metrics import QueenMetrics
from rbee.queen.nodes.hive_client import HiveClient
from rbee.queen.nodes.hive_directory import HiveDirectory
from rbee.queen.nodes.hive_relay import HiveRelay
from rbee.queen.nodes.local_hive import LocalHive
from rbee.queen.nodes.node_registry import NodeRegistry
from rbee.queen.nodes.node_service import NodeService, ssh_connector
from rbee.queen.nodes.remote_hive import RemoteHive, RemoteLaunch
from rbee.queen.nodes.ssh_preflight import SshPreflight
from rbee.queen.rate_limits import RateLimiter, client_limits, failure_throttle
from rbee.queen.routing.dispatch import Dispatcher
from rbee.queen.routing.embedding_dispatch import EmbeddingDispatcher
from rbee.queen.routing.hive_registry import HiveRegistry
from rbee.queen.routing.placement import Placement
from rbee.queen.routing.worker_registry import WorkerRegistry
from rbee.queen.settings import QueenSettings


async def build_app(settings: QueenSettings, timings: Timings, audit_log: AuditLog) -> web.Application:
    """The queen application, built inside the running loop that will serve it."""
    keyring = settings.keyring
    metrics = DaemonMetrics("queen")
    queen_metrics = QueenMetrics(metrics)
    keys = KeyStore(settings.data_dir / "keys.sqlite")
    key_limiter = KeyLimiter()
    usage = KeyUsage(keys, metrics, key_limiter.charge)
    audit = usage.tap(queen_metrics.tap(audit_log.append))
    limiter = RateLimiter(timings)
    public = public_paths(PUBLIC_PATHS | ({READY_PATH} if settings.ready_public else set()),
                          settings.metrics_public)
    unlimited = public | INTERNAL_PATHS
    app = new_app([
        observe_requests(metrics, QUIET_PATHS),
        failure_throttle(limiter, unlimited, audit),
        key_auth_middleware(keyring, keys, public, audit),
        client_limits(limiter, unlimited, audit),
        key_limits(key_limiter, usage, unlimited, audit),
    ])
    app[METRICS] = metrics
    app[KEYS] = keys
    app[KEY_USAGE] = usage
    app[AUDIT] = audit
    app.on_cleanup.append(lambda _: asyncio.to_thread(audit_log.close))
    # No cap on connections (aiohttp's default is 100): each relayed stream holds one to its worker.
    upstream_timeout = aiohttp.ClientTimeout(total=None, connect=timings.upstream_connect_timeout_s)
    session = aiohttp.ClientSession(timeout=upstream_timeout,
                                    connector=aiohttp.TCPConnector(limit=0),
                                    trace_configs=[forward_correlation()])
    hive_auth = lambda: keyring.headers_for("hive")  # noqa: E731
    node_keys = NodeKeys(keys, keyring, settings.data_dir / "tokens")
    local = LocalHive(HiveClient(f"http://127.0.0.1:{settings.hive_port}", session, hive_auth), settings,
                      node_keys)
    ssh = ssh_connector(settings.data_dir)
    launch = RemoteLaunch(settings.advertise_url, keyring, settings.worker_ctx_size, settings.hive_tunables,
                          node_keys)
    nodes = NodeRegistry(settings.data_dir / "nodes.sqlite")
    directory = HiveDirectory(
        local if settings.local_hive else None,
        nodes,
        lambda spec: RemoteHive(spec, HiveClient(spec.hive_url, session, hive_auth), ssh, launch),
        timings.hive_stop_grace_s,
    )
    on_reload(app, reload_tokens(keyring, audit))
    on_reload(app, directory.reload)
    hives = HiveRegistry(timings, audit)
    registry = WorkerRegistry()
    placement = Placement(directory, hives, registry, settings.worker_slots, timings, settings.gpu,
                          settings.models)
    dispatcher = Dispatcher(placement, session, lambda: keyring.headers_for("worker"), audit,
                            meter=queen_metrics.tasks)
    queen_metrics.watch(registry, hives, lambda: dispatcher.running_count)
    app[STATUS] = StatusSources(registry, hives, directory, nodes, dispatcher, queen_metrics.tasks)
    app[HIVE_RELAY] = HiveRelay(directory, session, hive_auth)
    app[REGISTRY] = registry
    app[HIVES] = hives
    app[PLACEMENT] = placement
    app[DISPATCHER] = dispatcher
    embeddings = EmbeddingDispatcher(placement, session, lambda: keyring.headers_for("worker"), audit)
    app[EMBEDDINGS] = embeddings
    app[TIMINGS] = timings
    app[BACKEND_POLICY] = settings.backend_policy
    app[MODELS] = settings.models
    app[HEALTH] = DaemonHealth(
        status=lambda: f"{len(hives.all())} hives, {len(registry.all())} workers, "
        f"{dispatcher.running_count} tasks running"
    )
    app[NODES] = NodeService(nodes, SshPreflight(ssh), audit, directory.forget, directory.preflight)
    app.on_cleanup.append(lambda _: asyncio.to_thread(nodes.close))
    add_routes(app)
    on_drain(app, lambda: _drain(dispatcher, embeddings, timings.drain_budget_s))
    app.cleanup_ctx.append(lambda _: _lifetime(directory, hives, session, settings.start_hive))
    app.cleanup_ctx.append(lambda _: _key_usage_owner(usage, keys, timings.key_usage_flush_s))
    return app


async def _key_usage_owner(usage: KeyUsage, keys: KeyStore, interval_s: float) -> AsyncIterator[None]:
    """Flush the per-key usage while serving; flush it once more and close the store at the end."""
    flusher = asyncio.create_task(usage.flush_every(interval_s), name="key-usage")
    yield
    flusher.cancel()
    usage.flush()
    await asyncio.to_thread(keys.close)


async def _drain(dispatcher: Dispatcher, embeddings: EmbeddingDispatcher, budget_s: float) -> None:
    """Refuse new tasks and embedding requests, and let running ones finish within the budget."""
    await asyncio.gather(dispatcher.drain(budget_s), embeddings.drain(budget_s))


async def _lifetime(
    directory: HiveDirectory,
    hives: HiveRegistry,
    session: aiohttp.ClientSession,
    start_hive: bool,
) -> AsyncIterator[None]:
    watcher = asyncio.create_task(hives.watch(), name="hive-staleness")
    if start_hive and directory.local is not None:
        await directory.local.ensure_running()
    yield
    watcher.cancel()
    await directory.stop_all()
    await session.close()
