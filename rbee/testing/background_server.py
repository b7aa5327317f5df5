"""An aiohttp application served on 127.0.0.1 from a thread of the test process.

For the peers tests talk to (a model file server, a Nomad API): started and stopped in-process,
so no process can outlive a test.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable

from aiohttp import web

START_TIMEOUT_S = 30.0


class BackgroundServer:
    """Serves `make_app()` on 127.0.0.1:`port` from its own thread and event loop."""

    def __init__(self, make_app: Callable[[], web.Application], port: int, name: str) -> None:
        self._make_app = make_app
        self.port = port
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        """Serve in a background thread; returns once the port accepts connections."""
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure, ssl_context),
                                        daemon=True, name=self.name)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise RuntimeError(f"{self.name} did not start")
        if failure:
            raise failure[0]

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._stopped is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(START_TIMEOUT_S)

    def _run(
        self, ready: threading.Event, failure: list[BaseException], context: ssl.SSLContext | None
    ) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve(ready, context))
        except BaseException as exc:  # reported to the starting thread
            failure.append(exc)
            ready.set()
        finally:
            self._loop.close()

    async def _serve(self, ready: threading.Event, context: ssl.SSLContext | None) -> None:
        self._stopped = asyncio.Event()
        runner = web.AppRunner(self._make_app(), handler_cancellation=True, access_log=None,
                               shutdown_timeout=1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=context).start()
        ready.set()
        try:
            await self._stopped.wait()
        finally:
            await runner.cleanup()
