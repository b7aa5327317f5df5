"""Choosing a worker for a request: reuse a serving one, else have the hive spawn one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from rbee.common.errors import ApiError
from rbee.common.tunables import Timings
from rbee.queen.hive_registry import HiveRegistry
from rbee.queen.local_hive import LocalHive
from rbee.queen.worker_registry import PENDING_STATES, ROUTABLE_STATES, WorkerRegistry, WorkerView

log = logging.getLogger(__name__)
READY_POLL_S = 0.1


class Placement:
    """Finds or starts the worker for each request and counts its in-flight requests."""

    def __init__(
        self,
        hive: LocalHive,
        hives: HiveRegistry,
        registry: WorkerRegistry,
        worker_slots: int,
        timings: Timings,
    ) -> None:
        self._hive = hive
        self._hives = hives
        self._registry = registry
        self._worker_slots = worker_slots
        self._timings = timings
        self._model_locks: dict[str, asyncio.Lock] = {}

    async def refresh(self) -> None:
        """Bring the registry up to date with the local hive (starting it when needed)."""
        url = self._hive.client.base_url
        if self._hives.is_stale(url):
            raise ApiError(
                503,
                "NODE_STALE",
                "the hive of this node missed its heartbeats; not routing to it",
                {"hive_url": url},
                headers={"Retry-After": str(max(1, int(self._timings.heartbeat_interval_s)))},
            )
        await self._hive.ensure_running()
        self._registry.sync(url, await self._hive.client.list_workers())

    async def stop_worker(self, worker_id: str) -> dict[str, Any]:
        """Drain and stop a worker through its hive."""
        await self.refresh()
        if self._registry.get(worker_id) is None:
            raise ApiError(404, "WORKER_NOT_FOUND", "no worker with this id is known")
        return await self._hive.client.stop_worker(worker_id)

    async def hive_models(self) -> list[dict[str, Any]]:
        """The models in the hive's catalog."""
        return await self._hive.client.list_models()

    @asynccontextmanager
    async def worker_for(self, model: str, backend: str = "cpu") -> AsyncIterator[WorkerView]:
        """Hold a slot's worth of a worker of `model` on `backend` for the duration of the block."""
        worker = await self._choose(model, backend)
        self._registry.acquire(worker.worker_id)
        try:
            yield worker
        finally:
            self._registry.release(worker.worker_id)

    async def _choose(self, model: str, backend: str) -> WorkerView:
        lock = self._model_locks.setdefault(model, asyncio.Lock())
        async with lock:
            await self.refresh()
            worker = self._registry.pick(model, backend)
            if worker is not None:
                return worker
            workers = self._registry.for_model(model, backend)
            if not workers:
                return await self._spawn(model, backend)
            pending = [w for w in workers if w.state in PENDING_STATES]
            if pending:
                return await self._wait_serving(pending[0].worker_id)
        raise ApiError(
            503,
            "ALL_SLOTS_BUSY",
            "every worker of this model is busy; retry shortly",
            {"model": model},
            headers={"Retry-After": "1"},
        )

    async def _spawn(self, model: str, backend: str) -> WorkerView:
        record = await self._hive.client.spawn_worker(model, self._worker_slots, backend)
        log.info("hive spawned worker %s for %s", record["worker_id"], model)
        return await self._wait_serving(record["worker_id"])

    async def _wait_serving(self, worker_id: str) -> WorkerView:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timings.loading_timeout_s
        url = self._hive.client.base_url
        while loop.time() < deadline:
            self._registry.sync(url, await self._hive.client.list_workers())
            worker = self._registry.get(worker_id)
            if worker is None or worker.state not in (*PENDING_STATES, *ROUTABLE_STATES):
                raise ApiError(
                    503,
                    "WORKER_START_FAILED",
                    "the worker could not start serving; see the hive's worker log",
                    {"worker_id": worker_id},
                )
            if worker.state in ROUTABLE_STATES:
                return worker
            await asyncio.sleep(READY_POLL_S)
        raise ApiError(504, "WORKER_LOAD_TIMEOUT", "the worker did not finish loading in time")
