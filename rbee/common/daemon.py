"""Running an aiohttp application as a daemon: bind, serve, drain and stop on SIGTERM/SIGINT.

A stop (signal or `request_stop`) first runs the application's drain hook while the server
still answers (so new work gets 503 DRAINING instead of a refused connection), then closes
the server and runs the cleanup hooks, which stop child processes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvloop
from aiohttp import web

from rbee.common.connection_limits import CONNECTION_GUARD, ConnectionGuard, GuardedSite, read_deadline
from rbee.common.errors import error_middleware
from rbee.common.notify import Notifier
from rbee.common.tls import ListenerTls, TlsError, TlsFiles
from rbee.common.tunables import http_limits

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024
HANDLER_CANCEL_TIMEOUT_S = 0.5
"""After the drain: how long a request still running may take to finish, then to end once cancelled
(aiohttp waits this twice; the drain budget is already spent, so a stream past it is cut at once)."""

Drain = Callable[[], Awaitable[None]]
Reload = Callable[[], None]
STOP_REQUESTED = web.AppKey("stop_requested", asyncio.Event)
DRAIN = web.AppKey("drain", list)
RELOAD = web.AppKey("reload", list)
NOTIFIER = web.AppKey("notifier", Notifier)


@dataclass(frozen=True)
class DaemonHealth:
    """How a daemon tells systemd about itself.

    `ready_on_start` is False for daemons that announce READY later themselves (a worker
    once its model is loaded). `healthy` gates the watchdog; `status` is the STATUS= line.
    """

    status: Callable[[], str]
    healthy: Callable[[], bool] = lambda: True
    ready_on_start: bool = True


HEALTH = web.AppKey("health", DaemonHealth)


def new_app(middlewares: list[Any] | None = None) -> web.Application:
    """An application with the structured-error middleware (outermost, so it renders every
    failure of the `middlewares` after it), the body size cap and read deadline, and stop and
    reload hooks.

    Daemons replace `app[HEALTH]` with what describes them before serving.
    """
    app = web.Application(
        middlewares=[error_middleware, read_deadline, *(middlewares or [])], client_max_size=MAX_BODY_BYTES
    )
    app[STOP_REQUESTED] = asyncio.Event()
    app[DRAIN] = []
    app[RELOAD] = []
    app[NOTIFIER] = Notifier()
    app[HEALTH] = DaemonHealth(status=lambda: "serving")
    return app


def on_drain(app: web.Application, drain: Drain) -> None:
    """Register a coroutine that lets in-flight work finish before the server closes."""
    app[DRAIN].append(drain)


def on_reload(app: web.Application, reload: Reload) -> None:
    """Register a callback that SIGHUP runs (re-reading tokens and settings)."""
    app[RELOAD].append(reload)


def _reload(app: web.Application, name: str) -> None:
    log.info("%s got SIGHUP: reloading", name)
    for reload in app[RELOAD]:
        reload()


def request_stop(app: web.Application) -> None:
    """Ask the daemon to drain and stop, as SIGTERM does."""
    app[STOP_REQUESTED].set()


def serve(
    app: web.Application | Awaitable[web.Application],
    host: str,
    port: int,
    name: str,
    reload: Reload | None = None,
    tls: TlsFiles | None = None,
) -> None:
    """Serve until SIGTERM, SIGINT or `request_stop`; exit 1 when the port cannot be bound or
    the TLS certificate and key (`tls`: HTTPS only, re-read on SIGHUP) cannot be loaded.

    `reload` (a config reload) runs first on SIGHUP, before the application's own reload hooks.
    The loop is uvloop's: it cuts the queen's CPU per relayed token by about a third.
    """
    try:
        listener_tls = ListenerTls(tls, name) if tls else None
    except TlsError as exc:
        print(f"error: {name} cannot serve TLS: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(app, host, port, name, reload, listener_tls))
    except OSError as exc:
        print(f"error: {name} cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(1) from exc


async def _serve(
    app: web.Application | Awaitable[web.Application], host: str, port: int, name: str, reload: Reload | None,
    listener_tls: ListenerTls | None,
) -> None:
    if not isinstance(app, web.Application):
        app = await app
    if reload is not None:
        app[RELOAD].insert(0, reload)
    if listener_tls is not None:
        on_reload(app, listener_tls.reload)
    limits = http_limits()
    guard = app[CONNECTION_GUARD] = ConnectionGuard(limits)
    runner = web.AppRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=HANDLER_CANCEL_TIMEOUT_S,
        keepalive_timeout=limits.keepalive_timeout_s, logger=guard.server_log,
    )
    await runner.setup()
    stop = app[STOP_REQUESTED]
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, app, name)
    notifier, health = app[NOTIFIER], app[HEALTH]
    watchdog = asyncio.create_task(notifier.watchdog(health.healthy, health.status))
    try:
        site = GuardedSite(runner, host, port, guard, listener_tls.context if listener_tls else None)
        await site.start()
        log.info("%s listening on %s", name, site.name)
        if health.ready_on_start:
            notifier.ready(health.status())
        await stop.wait()
        log.info("%s stopping: draining in-flight work", name)
        notifier.stopping()
        watchdog.cancel()
        for drain in app[DRAIN]:
            await drain()
    finally:
        watchdog.cancel()
        await runner.cleanup()
        log.info("%s stopped", name)
