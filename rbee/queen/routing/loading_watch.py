"""How far loading workers have loaded their model, for requests waiting on them.

The first time a waiting request asks about a loading worker, a background task follows that
worker's `/v1/loading/progress` stream and keeps its latest share; the task ends with the
stream (the worker serves, failed, or went away) and the share is forgotten. A worker not
answering yet (its HTTP server still starting) is asked again at the next question.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from rbee.common import sse, wire
from rbee.common.http import Headers, no_headers
from rbee.queen.routing.worker_registry import WorkerView

log = logging.getLogger(__name__)


class LoadingWatch:
    """The loading progress of the workers waiting requests ask about; used on the queen's loop."""

    def __init__(self, session: aiohttp.ClientSession, auth: Headers = no_headers) -> None:
        self._session = session
        self._auth = auth
        self._shares: dict[str, float] = {}
        self._following: dict[str, asyncio.Task[None]] = {}

    def share(self, workers: list[WorkerView]) -> float | None:
        """The largest share loaded (0.0 to 1.0) among `workers`, or None while none reported."""
        for worker in workers:
            if worker.worker_id not in self._following:
                task = asyncio.create_task(self._follow(worker))
                self._following[worker.worker_id] = task
        return max((self._shares[w.worker_id] for w in workers if w.worker_id in self._shares), default=None)

    async def _follow(self, worker: WorkerView) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=self._session.timeout.connect)
        try:
            async with self._session.get(f"{worker.url}/v1/loading/progress", headers=self._auth(),
                                         timeout=timeout) as response:
                if response.status != 200:
                    return
                async for received in sse.iter_events(response):
                    event = wire.parse_loading_event(received)
                    if isinstance(event, wire.LoadingProgress):
                        self._shares[worker.worker_id] = event.progress
        except (aiohttp.ClientError, sse.StreamTruncated, ValueError) as exc:
            log.debug("loading progress of worker %s unavailable: %s", worker.worker_id, exc)
        finally:
            self._following.pop(worker.worker_id, None)
            self._shares.pop(worker.worker_id, None)
