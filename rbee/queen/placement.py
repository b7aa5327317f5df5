"""Choosing a worker for a request: reuse a ready one, else have the hive spawn one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from rbee.common.errors import ApiError
from rbee.queen.local_hive import LocalHive
from rbee.queen.worker_registry import WorkerRegistry, WorkerView

log = logging.getLogger(__name__)
WORKER_READY_TIMEOUT_S = 300.0
READY_POLL_S = 0.1


class Placement:
    """Finds or starts the worker for each request and counts its in-flight requests."""

    def __init__(self, hive: LocalHive, registry: WorkerRegistry, worker_slots: int) -> None:
        self._hive = hive
        self._registry = registry
        self._worker_slots = worker_slots
        self._model_locks: dict[str, asyncio.Lock] = {}

    async def refresh(self) -> None:
        """Bring the registry up to date with the hive."""
        await self._hive.ensure_running()
        self._registry.sync(await self._hive.client.list_workers())

    async def hive_models(self) -> list[dict[str, Any]]:
        """The models in the hive's catalog."""
        return await self._hive.client.list_models()

    @asynccontextmanager
    async def worker_for(self, model: str) -> AsyncIterator[WorkerView]:
        """Hold a slot's worth of a worker of `model` for the duration of the block."""
        worker = await self._choose(model)
        worker.in_flight += 1
        try:
            yield worker
        finally:
            worker.in_flight -= 1

    async def _choose(self, model: str) -> WorkerView:
        lock = self._model_locks.setdefault(model, asyncio.Lock())
        async with lock:
            await self.refresh()
            worker = self._registry.pick(model)
            if worker is not None:
                return worker
            if not self._registry.for_model(model):
                return await self._spawn(model)
            pending = [w for w in self._registry.for_model(model) if w.state != "ready"]
            if pending:
                return await self._wait_ready(pending[0].worker_id)
        raise ApiError(
            503,
            "ALL_SLOTS_BUSY",
            "every worker of this model is busy; retry shortly",
            {"model": model},
            headers={"Retry-After": "1"},
        )

    async def _spawn(self, model: str) -> WorkerView:
        record = await self._hive.client.spawn_worker(model, self._worker_slots)
        log.info("hive spawned worker %s for %s", record["worker_id"], model)
        return await self._wait_ready(record["worker_id"])

    async def _wait_ready(self, worker_id: str) -> WorkerView:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WORKER_READY_TIMEOUT_S
        while loop.time() < deadline:
            self._registry.sync(await self._hive.client.list_workers())
            worker = self._registry.get(worker_id)
            if worker is None:
                raise ApiError(
                    503,
                    "WORKER_START_FAILED",
                    "the worker exited while loading its model; see the hive's worker log",
                    {"worker_id": worker_id},
                )
            if worker.state == "ready":
                return worker
            await asyncio.sleep(READY_POLL_S)
        raise ApiError(504, "WORKER_LOAD_TIMEOUT", "the worker did not finish loading in time")
