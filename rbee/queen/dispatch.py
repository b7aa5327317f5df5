"""Sending a task to a worker and relaying its native event stream, with cancellation."""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from rbee.common import sse
from rbee.common.errors import CORRELATION_HEADER, ApiError
from rbee.common.http import raise_for_error
from rbee.queen.placement import Placement
from rbee.queen.worker_registry import WorkerView

log = logging.getLogger(__name__)
CANCEL_TIMEOUT_S = 2.0
FINISHED_TASKS_REMEMBERED = 10_000
WORKER_CRASHED_EVENT = {
    "type": "error",
    "code": "WORKER_CRASHED",
    "message": "the worker stopped before finishing the answer",
}


class Dispatcher:
    """Runs tasks on workers; knows which worker runs each task so it can be cancelled."""

    def __init__(self, placement: Placement, session: aiohttp.ClientSession) -> None:
        self._placement = placement
        self._session = session
        self._running: dict[str, WorkerView] = {}
        self._finished: collections.deque[str] = collections.deque(maxlen=FINISHED_TASKS_REMEMBERED)
        self._background: set[asyncio.Task[None]] = set()
        self._draining = False

    async def drain(self, budget_s: float) -> None:
        """Refuse new tasks and wait up to `budget_s` for running ones to finish."""
        self._draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        while self._running and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self._running:
            log.warning("drain budget spent with %d task(s) still running", len(self._running))

    @staticmethod
    def new_task_id() -> str:
        """A fresh task id."""
        return uuid.uuid4().hex

    @asynccontextmanager
    async def stream(
        self, model: str, task_id: str, worker_body: dict[str, Any], correlation_id: str
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Open the worker's event stream for a task; leaving early cancels it at the worker."""
        if self._draining:
            raise ApiError(503, "DRAINING", "the queen is shutting down", headers={"Retry-After": "1"})
        async with self._placement.worker_for(model) as worker:
            body = {**worker_body, "task_id": task_id}
            headers = {CORRELATION_HEADER: correlation_id}
            try:
                response = await self._session.post(
                    f"{worker.url}/v1/inference", json=body, headers=headers
                )
            except aiohttp.ClientError as exc:
                raise ApiError(
                    503, "WORKER_UNREACHABLE", "the worker could not be reached", {"reason": str(exc)}
                ) from exc
            self._running[task_id] = worker
            completed = False
            try:
                await raise_for_error(response, "worker")

                async def events() -> AsyncIterator[dict[str, Any]]:
                    nonlocal completed
                    try:
                        async for event in sse.iter_events(response):
                            yield event
                        completed = True
                    except (aiohttp.ClientError, sse.StreamTruncated, ValueError) as exc:
                        log.warning("task %s lost its worker %s mid-stream: %s",
                                    task_id, worker.worker_id, exc)
                        yield WORKER_CRASHED_EVENT

                yield events()
            finally:
                self._running.pop(task_id, None)
                self._finished.append(task_id)
                if not completed:
                    self._cancel_in_background(worker, task_id)
                response.close()

    def _cancel_in_background(self, worker: WorkerView, task_id: str) -> None:
        task = asyncio.create_task(self._cancel_at_worker(worker, task_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _cancel_at_worker(self, worker: WorkerView, task_id: str) -> None:
        try:
            async with self._session.delete(
                f"{worker.url}/v1/inference/{task_id}",
                timeout=aiohttp.ClientTimeout(total=CANCEL_TIMEOUT_S),
            ) as response:
                log.info("cancelled task %s at worker %s: HTTP %d",
                         task_id, worker.worker_id, response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not cancel task %s at worker %s: %s", task_id, worker.worker_id, exc)

    async def cancel(self, task_id: str) -> None:
        """Cancel a running task; finished tasks are accepted silently, unknown ones are 404."""
        worker = self._running.get(task_id)
        if worker is not None:
            await self._cancel_at_worker(worker, task_id)
        elif task_id not in self._finished:
            raise ApiError(404, "TASK_NOT_FOUND", "no task with this id is known")
