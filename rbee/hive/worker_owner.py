"""The single owner of one worker's lifecycle: start, watch, kill when hung, restart by policy.

All changes to a worker's record happen in the owner (its constructor and its task); other
code only posts messages (`rbee.hive.owner_messages`: ready callback, heartbeat, stop,
reload) to its inbox.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rbee.common import processes
from rbee.common.audit import Audit, no_audit
from rbee.common.exit_codes import WORKER_LOAD_FAILED
from rbee.common.tunables import Timings
from rbee.common.wire import WorkerState
from rbee.common.wire_requests import WorkerTuning
from rbee.hive.catalog import ModelEntry
from rbee.hive.owner_messages import Heartbeat, OwnerMessage, Ready, Reload, Spawned, Stop
from rbee.hive.preflight import Need
from rbee.hive.restart_policy import RestartPolicy

log = logging.getLogger(__name__)

Launcher = Callable[["WorkerRecord"], Awaitable[Spawned]]
"""Starts a process of the worker (port: the record's when still free, else the next free one)."""


@dataclass(eq=False)
class WorkerRecord:
    """What the hive knows about one worker; written only by its owner."""

    worker_id: str
    model: ModelEntry
    port: int
    slots: int
    pid: int = 0
    state: WorkerState = WorkerState.LOADING
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    restarts: int = 0
    last_restart_at: float | None = None
    last_exit_code: int | None = None
    last_kill_reason: str | None = None
    slots_free: int = 0
    last_heartbeat_at: float | None = None
    need: Need | None = None
    host: str = "127.0.0.1"
    """The address the queen reaches the worker at."""
    embedding: bool = False
    """True: the worker serves embeddings, not generation."""
    ctx_size: int = 0
    """Context tokens per slot the worker runs with."""
    alias: str | None = None
    """The model table alias the queen serves it under (None: the model's name)."""
    tuning: WorkerTuning = field(default_factory=WorkerTuning)
    """Its model table entry's settings (context, GPU layers, template, keep-alive)."""
    last_used_at: float = field(default_factory=time.monotonic)
    """When the worker last had a slot in use or generated tokens (monotonic): eviction's order."""
    tokens_generated: int = 0

    @property
    def idle(self) -> bool:
        """Serving, with every slot free, as its last heartbeat said."""
        return self.state == WorkerState.IDLE and self.slots_free == self.slots

    @property
    def url(self) -> str:
        """Where the worker serves HTTP."""
        return f"http://{self.host}:{self.port}"

    def to_wire(self) -> dict[str, Any]:
        """JSON form for /v1/workers/list."""
        return {
            "worker_id": self.worker_id,
            "model": self.model.name,
            "model_path": self.model.path,
            "url": self.url,
            "port": self.port,
            "pid": self.pid,
            "slots": self.slots,
            "slots_free": self.slots_free,
            "state": self.state,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "restarts": self.restarts,
            "last_restart_at": self.last_restart_at,
            "last_exit_code": self.last_exit_code,
            "last_kill_reason": self.last_kill_reason,
            "embedding": self.embedding,
            "ctx_size": self.ctx_size,
            "alias": self.alias,
            **_placement_wire(self.need),
        }


def _placement_wire(need: Need | None) -> dict[str, Any]:
    """Where a worker runs and what it needs: backend, first GPU, every GPU, layers, bytes."""
    if need is None:
        return {"backend": "cpu", "device": None, "gpus": [], "gpu_layers": 0, "vram_required_bytes": 0,
                "memory_required_bytes": None, "address_space_limit_bytes": None}
    return {
        "backend": need.backend,
        "device": need.device,
        "gpus": [gpu.to_wire() for gpu in need.gpus],
        "gpu_layers": need.gpu_layers,
        "vram_required_bytes": need.vram_bytes,
        "memory_required_bytes": need.ram_bytes,
        "address_space_limit_bytes": need.address_space_limit,
    }


@dataclass(frozen=True)
class _Exited:
    code: int


@dataclass(frozen=True)
class _Hung:
    reason: str


class WorkerOwner:
    """Runs one worker process after another until it is stopped or its breaker opens."""

    def __init__(
        self,
        record: WorkerRecord,
        spawned: Spawned,
        launch: Launcher,
        policy: RestartPolicy,
        timings: Timings,
        audit: Audit = no_audit,
    ) -> None:
        """Own `record`, whose worker's first process is `spawned`."""
        self.record = record
        self._audit = audit
        self._launch = launch
        self._policy = policy
        self._timings = timings
        self._inbox: asyncio.Queue[OwnerMessage] = asyncio.Queue()
        self._stop_reason: str | None = None
        self._idle_since = time.monotonic()
        self._loading_since = time.monotonic()
        self._first = self._take(spawned)

    def post(self, message: OwnerMessage) -> None:
        """Deliver a message to the owner task."""
        if isinstance(message, Stop) and self._stop_reason is None:
            self._stop_reason = message.reason
        self._inbox.put_nowait(message)

    def _take(self, spawned: Spawned) -> asyncio.subprocess.Process:
        """Record a process of the worker that just started."""
        record = self.record
        record.port, record.pid = spawned.port, spawned.pid
        record.state = WorkerState.LOADING
        record.started_at = time.time()
        self._loading_since = time.monotonic()
        return spawned.process

    async def run(self) -> None:
        """Own the worker, whose first process is already started, until it stops for good."""
        record = self.record
        process = self._first
        while True:
            outcome = await self._supervise(process)
            if isinstance(outcome, Stop):
                await self._stop(process, outcome.reason)
                return
            if isinstance(outcome, _Hung):
                record.state = WorkerState.UNHEALTHY
                record.last_kill_reason = outcome.reason
                log.warning("worker %s (pid %d) is hung: %s; killing it",
                            record.worker_id, process.pid, outcome.reason)
                self._audit("worker.kill", worker_id=record.worker_id, pid=process.pid, reason=outcome.reason)
                code = await processes.terminate(
                    process, self._timings.sigterm_grace_s, f"worker {record.worker_id}",
                    self._force_kill_audit(process, self._timings.sigterm_grace_s, outcome.reason),
                )
            else:
                code = outcome.code
                if code == 0 or (record.state == WorkerState.LOADING and code == WORKER_LOAD_FAILED):
                    record.last_exit_code = code
                    record.state = WorkerState.STOPPED if code == 0 else WorkerState.FAILED
                    log.info("worker %s exited with code %d; not restarting it",
                             record.worker_id, code)
                    return
                log.warning("worker %s (pid %d) crashed with exit code %d",
                            record.worker_id, process.pid, code)
                self._audit("worker.crashed", worker_id=record.worker_id, pid=process.pid, exit_code=code)
            record.last_exit_code = code
            record.state = WorkerState.CRASHED
            if not await self._wait_before_restart():
                return
            process = self._take(await self._launch(record))

    async def _wait_before_restart(self) -> bool:
        record = self.record
        if self._stop_reason is not None:
            record.state = WorkerState.STOPPED
            return False
        if not self._policy.try_restart(record.model.name):
            record.state = WorkerState.FAILED
            log.error("worker %s not restarted: %s crashed %d times within %.0fs (circuit open)",
                      record.worker_id, record.model.name, self._timings.max_restarts,
                      self._timings.restart_window_s)
            return False
        delay = self._policy.delay(record.restarts)
        log.info("restarting worker %s in %.2fs (restart %d)",
                 record.worker_id, delay, record.restarts + 1)
        if await self._stop_requested_within(delay):
            record.state = WorkerState.STOPPED
            return False
        record.restarts += 1
        record.last_restart_at = time.time()
        return True

    async def _stop_requested_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(self._inbox.get(), left)
            except TimeoutError:
                return False
            if isinstance(message, Stop):
                return True
        return False

    async def _stop(self, process: asyncio.subprocess.Process, reason: str) -> None:
        record = self.record
        record.state = WorkerState.DRAINING
        log.info("stopping worker %s (pid %d): %s", record.worker_id, process.pid, reason)
        budget = self._timings.drain_budget_s + self._timings.sigterm_grace_s
        record.last_exit_code = await processes.terminate(
            process, budget, f"worker {record.worker_id}", self._force_kill_audit(process, budget, reason)
        )
        record.state = WorkerState.STOPPED

    def _force_kill_audit(
        self, process: asyncio.subprocess.Process, grace_s: float, reason: str
    ) -> Callable[[], None]:
        """What to record when the process outlives SIGTERM by `grace_s` and gets SIGKILL."""
        worker_id = self.record.worker_id
        return lambda: self._audit("worker.force_kill", worker_id=worker_id, pid=process.pid,
                                   grace_s=grace_s, reason=reason)

    async def _supervise(self, process: asyncio.subprocess.Process) -> _Exited | _Hung | Stop:
        """Watch one process until it exits, hangs or is asked to stop."""
        exited = asyncio.ensure_future(process.wait())
        message = asyncio.ensure_future(self._inbox.get())
        tick = min(self._timings.heartbeat_interval_s / 2, 1.0)
        try:
            while True:
                await asyncio.wait({exited, message}, timeout=tick, return_when=asyncio.FIRST_COMPLETED)
                if exited.done():
                    return _Exited(exited.result())
                if message.done():
                    verdict = self._handle(message.result(), process)
                    if verdict is not None:
                        return verdict
                    message = asyncio.ensure_future(self._inbox.get())
                verdict = self._check_timers()
                if verdict is not None:
                    return verdict
        finally:
            message.cancel()

    def _handle(self, message: OwnerMessage, process: asyncio.subprocess.Process) -> _Hung | Stop | None:
        record = self.record
        now = time.monotonic()
        match message:
            case Stop():
                return message
            case Reload():
                if process.returncode is None:
                    process.send_signal(signal.SIGHUP)
            case Ready() if record.state == WorkerState.LOADING:
                record.state = WorkerState.IDLE
                record.ready_at = time.time()
                record.slots_free = record.slots
                record.last_heartbeat_at = now
                record.last_used_at = now
                self._idle_since = now
                log.info("worker %s ready after %.2fs", record.worker_id, record.ready_at - record.started_at)
            case Heartbeat() if record.state not in (WorkerState.LOADING, WorkerState.UNHEALTHY):
                record.last_heartbeat_at = now
                record.slots_free = message.slots_free
                if (message.state == WorkerState.BUSY or message.slots_free < record.slots
                        or message.tokens_generated != record.tokens_generated):
                    record.last_used_at = now
                record.tokens_generated = message.tokens_generated
                if message.state != record.state:
                    record.state = message.state
                    self._idle_since = now
                if message.decode_stalled:
                    return _Hung("decode loop stalled")
        return None

    def _check_timers(self) -> _Hung | Stop | None:
        record = self.record
        timings = self._timings
        now = time.monotonic()
        if record.state == WorkerState.LOADING:
            if now - self._loading_since > timings.loading_timeout_s:
                return _Hung(f"still loading after {timings.loading_timeout_s:g}s")
            return None
        silent = now - (record.last_heartbeat_at or now)
        if silent > timings.stale_after_s:
            return _Hung(f"missed {timings.stale_after_missed} heartbeats ({silent:.1f}s silent)")
        keep_alive_s = record.tuning.keep_alive_s or timings.idle_unload_s
        if record.state == WorkerState.IDLE and now - self._idle_since > keep_alive_s:
            return Stop(f"idle for {keep_alive_s:g}s")
        return None
