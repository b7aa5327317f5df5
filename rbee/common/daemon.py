"""Running an aiohttp application as a daemon: bind, serve, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from aiohttp import web

from rbee.common.errors import error_middleware

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024
SHUTDOWN_TIMEOUT_S = 5.0


def new_app() -> web.Application:
    """An application with the structured-error middleware and the body size cap."""
    return web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)


def serve(app: web.Application | Awaitable[web.Application], host: str, port: int, name: str) -> None:
    """Serve until SIGTERM or SIGINT; handlers are cancelled when their client goes away."""
    log.info("%s listening on http://%s:%d", name, host, port)
    web.run_app(
        app,
        host=host,
        port=port,
        print=None,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
