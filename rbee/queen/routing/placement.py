"""Choosing a worker for a request: reuse a serving one, else have a node's hive spawn one.

A request names a node, or leaves the choice to the queen. Without a node, every node whose
hive is not stale is a candidate: a serving worker with a free slot anywhere wins (of the
request's backend, or any for `auto`, a CUDA one first); otherwise a worker is spawned on the
first node in spawn order (`spawn_order.py`; `localhost` first, then the registered nodes by
name, when no GPU memory decides) whose hive answers or can be started and takes the worker: a
hive that refuses (no such backend, too little memory) passes the spawn to the next node. A node
whose hive could not be started is passed over for `failed_node_cooldown_s` so one dead machine
does not slow every request down.

A request that finds others of its pool waiting queues behind them without looking for a slot
itself; the admission queue hands the slots out fairly between API keys (`admission.py`).

A model whose queued requests keep waiting (`gpu_replica_after_wait_s`) gets one more worker,
up to `gpu_max_replicas` workers, one spawn at a time.

A model's embedding workers (`embedding`: spawned for `/v1/embeddings`) and its generation workers
are two pools: a request is only ever placed on a worker of its own kind, and each pool has its
own admission queue, spawn lock and replicas (`pool_of`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from rbee.common.errors import ApiError
from rbee.common.tunables import GpuLimits, Timings
from rbee.common.wire import WorkerState
from rbee.queen.model_table import LiveModelTable
from rbee.queen.nodes.hive_directory import HiveDirectory, HiveHandle
from rbee.queen.routing.admission import AdmissionQueue
from rbee.queen.routing.backend_policy import AUTO
from rbee.queen.routing.hive_registry import HiveRegistry
from rbee.queen.routing.prefix_affinity import PrefixAffinity
from rbee.queen.routing.spawn_order import is_refusal, most_specific, spawn_order
from rbee.queen.routing.tenant import ANONYMOUS, Tenant
from rbee.queen.routing.worker_registry import (
    PENDING_STATES,
    ROUTABLE_STATES,
    WorkerRegistry,
    WorkerView,
    pool_of,
)

log = logging.getLogger(__name__)
READY_POLL_S = 0.1
SYNC_COALESCE_S = 0.2


class Placement:
    """Finds or starts the worker for each request and counts its in-flight requests."""

    def __init__(
        self,
        directory: HiveDirectory,
        hives: HiveRegistry,
        registry: WorkerRegistry,
        worker_slots: int,
        timings: Timings,
        gpu: GpuLimits | None = None,
        models: LiveModelTable | None = None,
    ) -> None:
        """`models` is the model table: an alias's workers are spawned with its ref and settings."""
        self._directory = directory
        self._hives = hives
        self._registry = registry
        self._worker_slots = worker_slots
        self._timings = timings
        self._gpu = gpu or GpuLimits()
        self._models = models or LiveModelTable()
        self._replicas: dict[str, asyncio.Task[None]] = {}
        self._model_locks: dict[str, asyncio.Lock] = {}
        self._failed_until: dict[str, float] = {}
        self._synced_at: dict[str, float] = {}
        self.admission = AdmissionQueue(timings)
        self.affinity = PrefixAffinity(timings)

    def _stale(self, handle: HiveHandle) -> ApiError | None:
        if not self._hives.is_stale(handle.client.base_url):
            return None
        return ApiError(
            503,
            "NODE_STALE",
            f"the hive of node {handle.name} missed its heartbeats; not routing to it",
            {"hive_url": handle.client.base_url, "node": handle.name},
            headers={"Retry-After": str(max(1, int(self._timings.heartbeat_interval_s)))},
        )

    async def _sync(self, handle: HiveHandle) -> None:
        """Start the node's hive when needed and take its worker list as the truth.

        Requests arriving within `SYNC_COALESCE_S` of the last sync share it (under load every
        request would otherwise cost the hive a list call).
        """
        stale = self._stale(handle)
        if stale is not None:
            raise stale
        url = handle.client.base_url
        now = asyncio.get_running_loop().time()
        if now - self._synced_at.get(url, -SYNC_COALESCE_S) < SYNC_COALESCE_S:
            return
        await handle.ensure_running()
        self._registry.sync(url, await handle.client.list_workers())
        self._synced_at[url] = asyncio.get_running_loop().time()

    async def refresh(self) -> None:
        """Bring the registry up to date with the local hive (starting it when needed)."""
        if self._directory.local is not None:
            await self._sync(self._directory.local)

    async def _usable(self, node: str | None) -> list[HiveHandle]:
        """The nodes a request may use: the one it names, or every node not stale."""
        if node is not None:
            handle = await self._directory.get(node)
            await self._sync(handle)
            return [handle]
        every = await self._directory.all()
        handles = [h for h in every if self._stale(h) is None]
        if not handles and every:
            stale = self._stale(every[0])
            assert stale is not None
            raise stale
        if not handles:
            raise ApiError(503, "NO_NODE_AVAILABLE",
                           "no node can serve: the queen runs without a local hive and no node is "
                           "registered (`rbee setup add-node`)", headers={"Retry-After": "1"})
        local = self._directory.local
        if local in handles:
            if len(handles) == 1:
                await self._sync(local)
            elif not await self._synced(local):
                handles = [h for h in handles if h is not local]
        return handles

    async def _synced(self, handle: HiveHandle) -> bool:
        """Sync a hive that other nodes can stand in for: False, and a cooldown, when it cannot
        start (False at once during the cooldown)."""
        now = time.monotonic()
        if self._cooling_down(handle, now):
            return False
        try:
            await self._sync(handle)
        except ApiError as exc:
            self._could_not_start(handle, exc, now)
            return False
        return True

    def _cooling_down(self, handle: HiveHandle, now: float) -> bool:
        """True while a node whose hive could not start is passed over."""
        return self._failed_until.get(handle.name, 0.0) > now

    def _could_not_start(self, handle: HiveHandle, exc: ApiError, now: float) -> None:
        """Pass `handle` over for the failed-node cooldown."""
        log.warning("node %s cannot serve now (%s); trying the other nodes", handle.name, exc.code)
        self._failed_until[handle.name] = now + self._timings.failed_node_cooldown_s

    def node_of(self, worker: WorkerView) -> str | None:
        """The name of the node a worker runs on, when its hive is one of the queen's nodes."""
        handle = self._directory.by_url(worker.hive_url)
        return handle.name if handle is not None else None

    async def stop_worker(self, worker_id: str) -> dict[str, Any]:
        """Drain and stop a worker through its hive."""
        await self.refresh()
        worker = self._registry.get(worker_id)
        handle = self._directory.by_url(worker.hive_url) if worker else None
        if worker is not None and handle is None:
            await self._directory.all()
            handle = self._directory.by_url(worker.hive_url)
        if handle is None:
            raise ApiError(404, "WORKER_NOT_FOUND", "no worker with this id is known")
        return await handle.client.stop_worker(worker_id)

    async def hive_catalogs(self) -> list[dict[str, Any]]:
        """The catalog answers (`models`, `installable`) of every node that answers."""
        handles = await self._usable(None)
        alive = await asyncio.gather(*(h.client.is_alive() for h in handles))
        answers = await asyncio.gather(*(h.client.catalog() for h, up in zip(handles, alive, strict=True)
                                         if up), return_exceptions=True)
        return [answer for answer in answers if isinstance(answer, dict)]

    @asynccontextmanager
    async def worker_for(
        self, model: str, backend: str = AUTO, node: str | None = None, *, embedding: bool = False,
        waiter: object | None = None, prefix: tuple[bytes, ...] = (), tenant: Tenant = ANONYMOUS,
    ) -> AsyncIterator[WorkerView]:
        """Hold a slot's worth of a worker of `model` for backend policy `backend` (on `node`, when
        given): an embedding worker when `embedding`, else a generation worker; `waiter` names the
        request in the admission queue (`AdmissionQueue.position`), where it waits for `tenant`
        (fair share between API keys); `prefix` are the keys of its prompt
        (`PrefixAffinity.keys`): the worker that served the longest of them is preferred."""
        pool = pool_of(model, embedding)
        worker = await self._admit(model, backend, node, embedding, waiter,
                                   self.affinity.worker_of(pool, prefix), tenant)
        self.affinity.served(pool, prefix, worker.worker_id)
        self._registry.acquire(worker.worker_id)
        try:
            yield worker
        finally:
            self._registry.release(worker.worker_id)
            self.admission.finished(pool_of(model, embedding))

    def loading_workers(self, model: str) -> list[WorkerView]:
        """The generation workers of `model` that are loading it now."""
        return [w for w in self._registry.for_model(model) if w.state is WorkerState.LOADING]

    async def _admit(
        self, model: str, backend: str, node: str | None, embedding: bool, waiter: object | None,
        prefer: str | None, tenant: Tenant,
    ) -> WorkerView:
        """A worker with a free slot now (`prefer` if it may) when no request of the pool waits,
        else after waiting for its turn in the pool's admission queue."""
        pool = pool_of(model, embedding)
        if not self.admission.depth(pool):
            worker = await self._choose(model, backend, node, embedding, prefer)
            if worker is not None:
                return worker
        loop = asyncio.get_running_loop()
        queued_at = loop.time()
        async with self.admission.place(pool, waiter, tenant) as seat:
            while True:
                await self.admission.wait_turn(seat, loop.time() - queued_at)
                worker = await self._choose(model, backend, node, embedding, prefer)
                if worker is None:
                    self.admission.passed(seat, saw_all=node is None and backend == AUTO)
                elif self.admission.take(seat):
                    log.debug("request for %s admitted after %.3fs queued", pool, loop.time() - queued_at)
                    return worker
                if self.admission.longest_wait_s(pool) >= self._gpu.replica_after_wait_s:
                    self._add_replica(model, backend, node, embedding)

    async def _choose(
        self, model: str, backend: str, node: str | None, embedding: bool, prefer: str | None = None
    ) -> WorkerView | None:
        """A worker of `model` and kind `embedding` with a free slot (`prefer` when `pick` allows;
        spawned or awaited when there is none at all); None when every such worker is busy."""
        lock = self._model_locks.setdefault(pool_of(model, embedding), asyncio.Lock())
        async with lock:
            handles = await self._usable(node)
            urls = {h.client.base_url for h in handles}
            worker = self._registry.pick(model, backend, urls, embedding, prefer,
                                         self._timings.prefix_affinity_slack)
            if worker is not None:
                return worker
            workers = self._registry.for_model(model, backend, urls, embedding)
            pending = [w for w in workers if w.state in PENDING_STATES]
            if pending and not any(w.state in ROUTABLE_STATES for w in workers):
                return await self._wait_serving(self._by_url(handles, pending[0].hive_url),
                                                pending[0].worker_id)
            if not workers:
                return await self._spawn(model, backend, handles, explicit=node is not None,
                                         embedding=embedding)
        return None

    @staticmethod
    def _by_url(handles: list[HiveHandle], hive_url: str) -> HiveHandle:
        return next(h for h in handles if h.client.base_url == hive_url)

    def _add_replica(self, model: str, backend: str, node: str | None, embedding: bool) -> None:
        """Spawn one more worker of `model` and kind `embedding` in the background, unless one is
        being spawned or the pool has its alias's `max_replicas` (else `gpu_max_replicas`) workers already."""
        pool = pool_of(model, embedding)
        live = [w for w in self._registry.for_model(model, backend, embedding=embedding)
                if w.state in (*PENDING_STATES, *ROUTABLE_STATES)]
        most = self._models.max_replicas(model, self._gpu.max_replicas)
        if pool in self._replicas or len(live) >= most:
            return
        log.info("requests for %s keep waiting; adding worker %d of at most %d", pool, len(live) + 1, most)
        task = asyncio.create_task(self._replica(model, backend, node, {w.hive_url for w in live}, embedding))
        self._replicas[pool] = task
        task.add_done_callback(lambda _: self._replicas.pop(pool, None))

    async def _replica(
        self, model: str, backend: str, node: str | None, busy_urls: set[str], embedding: bool
    ) -> None:
        """Spawn a replica and wake a waiter for each of its slots; a failure is logged and holds
        the pool's replica spawn for `gpu_replica_after_wait_s`, so refusing hives are not flooded."""
        try:
            handles = await self._usable(node)
            await self._spawn(model, backend, handles, node is not None, busy_urls, embedding=embedding)
            self.admission.slot_freed(pool_of(model, embedding))
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not add a worker for %s: %s", pool_of(model, embedding), exc)
            await asyncio.sleep(self._gpu.replica_after_wait_s)

    async def _spawn(
        self, model: str, backend: str, handles: list[HiveHandle], explicit: bool,
        busy_urls: set[str] | None = None, *, embedding: bool = False,
    ) -> WorkerView:
        """Spawn (an embedding worker when `embedding`) on the first node in spawn order whose hive
        answers or starts and does not refuse (only the named one when explicit); every node
        failing raises the most specific failure."""
        failure: ApiError | None = None
        now = time.monotonic()
        candidates = [h for h in handles if explicit or not self._cooling_down(h, now)]
        for handle in await spawn_order(candidates, backend, busy_urls or set()):
            try:
                await handle.ensure_running()
            except ApiError as exc:
                if explicit:
                    raise
                self._could_not_start(handle, exc, now)
                failure = most_specific(failure, exc)
                continue
            self._failed_until.pop(handle.name, None)
            try:
                plan = self._models.spawn_plan(model, self._worker_slots)
                record = await handle.client.spawn_worker(plan.ref, plan.slots, backend, embedding,
                                                          plan.alias, plan.tuning)
            except ApiError as exc:
                if explicit or not is_refusal(exc):
                    raise
                log.info("node %s refused a worker for %s (%s); trying the next node",
                         handle.name, pool_of(model, embedding), exc.code)
                failure = most_specific(failure, exc)
                continue
            log.info("hive of node %s spawned worker %s for %s (%s)", handle.name, record["worker_id"],
                     pool_of(model, embedding), record.get("backend", backend))
            return await self._wait_serving(handle, record["worker_id"])
        raise failure or ApiError(503, "NO_NODE_AVAILABLE", "no node's hive answers or could be started",
                                  headers={"Retry-After": "1"})

    async def _wait_serving(self, handle: HiveHandle, worker_id: str) -> WorkerView:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timings.loading_timeout_s
        while loop.time() < deadline:
            self._registry.sync(handle.client.base_url, await handle.client.list_workers())
            worker = self._registry.get(worker_id)
            if worker is None or worker.state not in (*PENDING_STATES, *ROUTABLE_STATES):
                raise ApiError(
                    503,
                    "WORKER_START_FAILED",
                    "the worker could not start serving; see the hive's worker log",
                    {"worker_id": worker_id},
                )
            if worker.state in ROUTABLE_STATES:
                self.admission.slot_freed(pool_of(worker.model, worker.embedding), worker.slots - 1)
                return worker
            await asyncio.sleep(READY_POLL_S)
        raise ApiError(504, "WORKER_LOAD_TIMEOUT", "the worker did not finish loading in time")
