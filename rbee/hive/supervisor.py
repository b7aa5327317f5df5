"""The hive's workers: spawning them and routing messages to each worker's owner task."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from rbee.common import log_context, processes
from rbee.common.audit import Audit, no_audit
from rbee.common.auth import Keyring
from rbee.common.child_commands import worker_command
from rbee.common.config import inherited_option
from rbee.common.config_schema import WorkerOptions
from rbee.common.defaults import DEFAULT_ENGINE
from rbee.common.errors import ApiError
from rbee.common.ports import next_free_port, port_is_free
from rbee.common.tunables import GpuLimits, Timings
from rbee.common.wire import WorkerState
from rbee.common.wire_requests import WorkerTuning
from rbee.hive import preflight, worker_pids
from rbee.hive.catalog import ModelEntry
from rbee.hive.eviction import EVICTABLE_CODES, Candidate, least_recently_used, still_idle
from rbee.hive.gpu_fit import MIB
from rbee.hive.owner_messages import Heartbeat, Ready, Reload, Spawned, Stop
from rbee.hive.preflight import Ask, GpuPolicy, HostRoom, Need
from rbee.hive.restart_policy import RestartPolicy
from rbee.hive.vram_ledger import VramLedger
from rbee.hive.worker_owner import WorkerOwner, WorkerRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupervisorSettings:
    """How workers are started."""

    hive_url: str
    data_dir: Path
    worker_host: str
    """Address workers bind (the hive's own bind address)."""
    advertise_host: str
    """Address the queen uses to reach the workers."""
    worker_port_start: int
    ctx_size: int
    keyring: Keyring
    gpu: GpuPolicy = field(default_factory=GpuPolicy)
    """The node's backend policy, per-model GPU layers and split settings."""
    gpu_limits: GpuLimits = field(default_factory=GpuLimits)

    @property
    def logs_dir(self) -> Path:
        """Where each worker's output goes."""
        return self.data_dir / "logs"

    @property
    def pid_file(self) -> Path:
        """The on-disk list of worker PIDs, for cleaning up after a hive that died."""
        return self.data_dir / "workers.json"


@dataclass(frozen=True)
class LaunchSpec:
    """How a worker process starts for its need: worker options, environment, memory limit."""

    options: dict[str, Any]
    """`WorkerOptions` beyond the model, address, slots and context."""
    env: dict[str, str]
    """Variables added to the hive's environment."""
    address_space_limit: int | None
    """RLIMIT_AS in bytes; None: no limit (GPU workers)."""


def launch_spec(need: Need | None) -> LaunchSpec:
    """A CPU worker: its address-space limit, and no GPU visible (`CUDA_VISIBLE_DEVICES` empty, so a
    CUDA build of the engine opens no context and takes no GPU memory). A cuda worker: no limit, its GPUs
    by UUID in CUDA_VISIBLE_DEVICES (tensor_split order), so it sees them as devices 0…n−1; split
    mode `none` on one GPU, else the node's with a tensor_split; `gpu_layers` when partial."""
    if need is None or need.backend == "cpu":
        return LaunchSpec({}, {"CUDA_VISIBLE_DEVICES": ""}, need.address_space_limit if need else None)
    if need.backend != "cuda":
        return LaunchSpec({"backend": need.backend}, {}, None)
    options: dict[str, Any] = {"backend": "cuda", "device": 0, "split_mode": need.split_mode}
    if need.placement is not None and need.placement.tensor_split is not None:
        options["tensor_split"] = list(need.placement.tensor_split)
    if need.partial:
        options["gpu_layers"] = need.gpu_layers
    return LaunchSpec(options, {"CUDA_VISIBLE_DEVICES": ",".join(gpu.uuid for gpu in need.gpus)}, None)


class WorkerSupervisor:
    """Starts workers, each with its own owner task, and keeps the registry of owners."""

    def __init__(
        self, settings: SupervisorSettings, timings: Timings, audit: Audit = no_audit,
        ledger: VramLedger | None = None,
    ) -> None:
        """`ledger` books GPU memory (default: one over this machine's GPUs)."""
        self.settings = settings
        self.timings = timings
        self._audit = audit
        self.ledger = ledger or VramLedger(settings.gpu_limits)
        self.policy = RestartPolicy(timings)
        self.draining = False
        self._owners: dict[str, WorkerOwner] = {}
        self._spawned: dict[str, Spawned] = {}
        """The latest process started for each worker (its pid for the pid file, its port taken)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._port_lock = asyncio.Lock()
        self._evict_lock = asyncio.Lock()
        """One eviction at a time, so two spawns never stop workers for the same room."""

    def list(self) -> list[WorkerRecord]:
        """Every worker this hive owns, in any state."""
        return [owner.record for owner in self._owners.values()]

    def status_line(self) -> str:
        """One line for systemd's STATUS=: workers by state."""
        states: dict[str, int] = {}
        for record in self.list():
            states[record.state] = states.get(record.state, 0) + 1
        detail = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        return f"{sum(states.values())} workers" + (f" ({detail})" if detail else "")

    def _owner(self, worker_id: str) -> WorkerOwner:
        owner = self._owners.get(worker_id)
        if owner is None:
            raise ApiError(404, "WORKER_NOT_FOUND", "this hive does not own that worker")
        return owner

    async def spawn(
        self, model: ModelEntry, slots: int, backend: str = "auto", device: int | None = None,
        *, embedding: bool = False, alias: str | None = None, tuning: WorkerTuning | None = None,
    ) -> WorkerRecord:
        """Preflight (backend, GPUs booked, RAM, disk; idle workers evicted when they make room),
        then start a worker for `model` (one that serves embeddings when `embedding`; served as
        `alias`, run with `tuning`: a model table entry's settings); answers once the process
        exists (state `loading`). A failed preflight raises its ApiError and starts nothing."""
        if self.draining:
            raise ApiError(503, "DRAINING", "this hive is shutting down", headers={"Retry-After": "1"})
        if self.policy.breaker_open(model.name):
            raise ApiError(
                503,
                "CIRCUIT_OPEN",
                "workers of this model crashed too often; not starting another for now",
                {"model": model.name},
                headers={"Retry-After": str(int(self.timings.restart_window_s))},
            )
        tuning = tuning or WorkerTuning()
        ask = Ask(f"w-{uuid.uuid4().hex[:10]}", model.name, Path(model.path),
                  tuning.ctx_size or self.settings.ctx_size, slots, backend, device,
                  inherited_option("worker", "engine") or DEFAULT_ENGINE, tuning.gpu_layers)
        need = await self._preflight_making_room(ask)
        record = WorkerRecord(ask.worker_id, model, 0, slots, need=need, host=self.settings.advertise_host,
                              embedding=embedding, ctx_size=ask.ctx_size, alias=alias, tuning=tuning)
        try:
            spawned = await self._launch(record)
        except BaseException:
            self.ledger.release(record.worker_id)
            raise
        owner = WorkerOwner(record, spawned, self._launch, self.policy, self.timings, self._audit)
        self._owners[record.worker_id] = owner
        task = asyncio.create_task(self._own(owner), name=f"owner-{record.worker_id}",
                                   context=log_context.only(worker_id=record.worker_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record

    def _held(self) -> dict[str, int]:
        """The RAM each live worker holds by its preflight (read on the event loop)."""
        return {worker_id: owner.record.need.ram_bytes for worker_id, owner in self._owners.items()
                if owner.record.need is not None}

    def _plan(self, ask: Ask, held: dict[str, int], gone: frozenset[str] = frozenset()) -> Need:
        """The preflight of `ask` with the workers' RAM `held`, `gone` counted as stopped."""
        room = HostRoom(sum(held.values()), self.timings.ram_budget_mib * MIB,
                        sum(held.get(worker_id, 0) for worker_id in gone), gone)
        return preflight.plan(ask, self.settings.gpu, self.ledger, self.settings.data_dir, room)

    def _refused(self, ask: Ask, err: ApiError) -> None:
        log.warning("not spawning a worker for %s: %s", ask.model_name, err.message)
        self._audit("worker.refused", model=ask.model_name, code=err.code, **err.details)

    async def _preflight_making_room(self, ask: Ask) -> Need:
        """The spawn's preflight; when it lacks RAM or VRAM and eviction is on, stop the least
        recently used idle workers that make it fit, then run it again. Raises the refusal."""
        try:
            return await asyncio.to_thread(self._plan, ask, self._held())
        except ApiError as err:
            if not (self.timings.evict_idle and err.code in EVICTABLE_CODES):
                self._refused(ask, err)
                raise
            refusal = err
        async with self._evict_lock:
            chosen = await self._choose_evictions(ask)
            if chosen is None:
                self._refused(ask, refusal)
                raise refusal
            await self._evict(chosen, ask, refusal.code)
            try:
                return await asyncio.to_thread(self._plan, ask, self._held())
            except ApiError as err:
                self._refused(ask, err)
                raise

    async def _choose_evictions(self, ask: Ask) -> list[Candidate] | None:
        """The idle workers to stop for `ask` (each checked idle at the worker itself; never one of
        the same model, which a replica would only replace), or None."""
        idle = [Candidate(record.worker_id, record.last_used_at, record.need.ram_bytes if record.need else 0,
                          record.url) for record in self.list()
                if record.idle and record.model.name != ask.model_name]
        async with aiohttp.ClientSession() as session:
            checked = [c for c in idle if await still_idle(session, c)]
        held = self._held()

        def fits(gone: frozenset[str]) -> bool:
            try:
                self._plan(ask, held, gone)
            except ApiError:
                return False
            return True

        return await asyncio.to_thread(least_recently_used, checked, fits)

    async def _evict(self, chosen: list[Candidate], ask: Ask, code: str) -> None:
        """Stop each chosen worker (it drains first) and wait until its owner is gone."""
        now = time.monotonic()
        tasks = []
        for candidate in chosen:
            owner = self._owners.get(candidate.worker_id)
            if owner is None:
                continue
            record = owner.record
            log.warning("evicting idle worker %s (%s, unused for %.0fs) to make room for %s (%s)",
                        record.worker_id, record.model.name, now - record.last_used_at, ask.model_name, code)
            self._audit("worker.evicted", worker_id=record.worker_id, model=record.model.name,
                        for_model=ask.model_name, reason=code, idle_s=round(now - record.last_used_at, 1),
                        ram_bytes=candidate.ram_bytes)
            owner.post(Stop(f"evicted to make room for {ask.model_name}"))
            tasks.extend(task for task in self._tasks if task.get_name() == f"owner-{record.worker_id}")
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _own(self, owner: WorkerOwner) -> None:
        try:
            await owner.run()
        finally:
            self._owners.pop(owner.record.worker_id, None)
            self._spawned.pop(owner.record.worker_id, None)
            self.ledger.release(owner.record.worker_id)
            self._save_pids()
            log.info("worker %s left the registry in state %s",
                     owner.record.worker_id, owner.record.state)
            self._audit("worker.removed", worker_id=owner.record.worker_id, state=owner.record.state,
                        exit_code=owner.record.last_exit_code)

    async def _launch(self, record: WorkerRecord) -> Spawned:
        """Start a process of the worker on the record's port when still free, else the next
        free one; the record is its owner's to update."""
        async with self._port_lock:
            taken = {s.port for worker_id, s in self._spawned.items() if worker_id != record.worker_id}
            host = self.settings.worker_host
            port = record.port
            if not (port and port not in taken and port_is_free(port, host)):
                port = next_free_port(self.settings.worker_port_start, taken, host)
            spec = launch_spec(record.need)
            template = {"chat_template": record.tuning.chat_template} if record.tuning.chat_template else {}
            options = WorkerOptions(
                model=record.model.path, host=self.settings.worker_host, port=port,
                worker_id=record.worker_id, hive_url=self.settings.hive_url, slots=record.slots,
                ctx_size=record.ctx_size, embedding=record.embedding, **spec.options, **template,
            )
            args = worker_command(options, self.settings.keyring.child_args("worker", ("hive", "worker")))
            self.ledger.loading(record.worker_id)
            process = await processes.spawn(args, self.settings.logs_dir / f"{record.worker_id}.log",
                                            spec.address_space_limit, spec.env)
            spawned = self._spawned[record.worker_id] = Spawned(process, port)
        log.info("spawned worker %s (pid %d) for %s on port %d",
                 record.worker_id, process.pid, record.model.name, port)
        self._audit("worker.spawn", worker_id=record.worker_id, pid=process.pid, model=record.model.name,
                    port=port, restarts=record.restarts)
        self._save_pids()
        return spawned

    def report_ready(self, worker_id: str, port: int) -> WorkerRecord:
        """Pass a worker's ready callback to its owner."""
        owner = self._owner(worker_id)
        if owner.record.port != port:
            raise ApiError(404, "WORKER_NOT_FOUND", "this hive does not own that worker")
        owner.post(Ready())
        self.ledger.loaded(worker_id)
        return owner.record

    def heartbeat(self, worker_id: str, report: Mapping[str, Any]) -> WorkerRecord:
        """Pass a worker's heartbeat (its validated `state`, `slots_free` and `decode_stalled`)
        to its owner."""
        owner = self._owner(worker_id)
        owner.post(Heartbeat(WorkerState(report["state"]), report["slots_free"],
                             bool(report.get("decode_stalled", False)),
                             int(report.get("tokens_generated", 0))))
        return owner.record

    def stop(self, worker_id: str, reason: str) -> WorkerRecord:
        """Ask a worker's owner to drain and stop it for good."""
        owner = self._owner(worker_id)
        owner.post(Stop(reason))
        self._audit("worker.stop", worker_id=worker_id, reason=reason)
        return owner.record

    def reload_all(self) -> None:
        """Pass a SIGHUP on to every running worker (through its owner), to re-read tokens."""
        for owner in self._owners.values():
            owner.post(Reload())

    async def stop_all(self, reason: str) -> None:
        """Stop every worker (each drains, then SIGTERM → grace → SIGKILL) and wait."""
        self.draining = True
        for owner in list(self._owners.values()):
            owner.post(Stop(reason))
            self._audit("worker.stop", worker_id=owner.record.worker_id, reason=reason)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _save_pids(self) -> None:
        pids = {worker_id: spawned.pid for worker_id, spawned in self._spawned.items()}
        worker_pids.save(self.settings.pid_file, pids)

    async def leftovers_stopped(self) -> AsyncIterator[None]:
        """A cleanup context for the hive's start: before it serves, stop the workers a previous
        run of this hive left behind."""
        await asyncio.to_thread(worker_pids.stop_leftovers, self.settings.pid_file,
                                self.timings.sigterm_grace_s)
        yield
