"""Spawning and supervising worker processes: one owner task per worker watches its exit."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rbee.common import processes
from rbee.common.errors import ApiError
from rbee.common.ports import next_free_port
from rbee.hive.catalog import ModelEntry

log = logging.getLogger(__name__)
STOP_GRACE_S = 10.0


@dataclass(eq=False)
class WorkerRecord:
    """A worker process this hive started."""

    worker_id: str
    model: ModelEntry
    port: int
    slots: int
    process: asyncio.subprocess.Process
    state: str = "loading"
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    ready_reported: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        """Where the worker serves HTTP."""
        return f"http://127.0.0.1:{self.port}"

    def to_wire(self) -> dict[str, object]:
        """JSON form for /v1/workers/list."""
        return {
            "worker_id": self.worker_id,
            "model": self.model.name,
            "model_path": self.model.path,
            "url": self.url,
            "port": self.port,
            "pid": self.process.pid,
            "slots": self.slots,
            "state": self.state,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
        }


@dataclass(frozen=True)
class SupervisorSettings:
    """How workers are started."""

    hive_url: str
    logs_dir: Path
    worker_port_start: int
    ctx_size: int


class WorkerSupervisor:
    """Owns the hive's worker processes and their registry."""

    def __init__(self, settings: SupervisorSettings) -> None:
        self.settings = settings
        self._workers: dict[str, WorkerRecord] = {}
        self._owners: set[asyncio.Task[None]] = set()
        self._spawn_lock = asyncio.Lock()

    def list(self) -> list[WorkerRecord]:
        """Workers alive right now."""
        return list(self._workers.values())

    async def spawn(self, model: ModelEntry, slots: int) -> WorkerRecord:
        """Start a worker for `model` on the next free port and watch it."""
        async with self._spawn_lock:
            taken = {record.port for record in self._workers.values()}
            port = next_free_port(self.settings.worker_port_start, taken)
            worker_id = f"w-{uuid.uuid4().hex[:10]}"
            args = [
                sys.executable, "-m", "rbee", "worker",
                "--model", model.path,
                "--port", str(port),
                "--worker-id", worker_id,
                "--hive-url", self.settings.hive_url,
                "--slots", str(slots),
                "--ctx-size", str(self.settings.ctx_size),
            ]
            process = await processes.spawn(args, self.settings.logs_dir / f"{worker_id}.log")
            record = WorkerRecord(worker_id, model, port, slots, process)
            self._workers[worker_id] = record
        log.info("spawned worker %s (pid %d) for %s on port %d",
                 worker_id, process.pid, model.name, port)
        owner = asyncio.create_task(self._watch(record), name=f"owner-{worker_id}")
        self._owners.add(owner)
        owner.add_done_callback(self._owners.discard)
        return record

    async def _watch(self, record: WorkerRecord) -> None:
        """The owner of `record`'s state: loading → ready, and gone at process exit."""
        exited = asyncio.ensure_future(record.process.wait())
        reported = asyncio.ensure_future(record.ready_reported.wait())
        await asyncio.wait({exited, reported}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            record.state = "ready"
            record.ready_at = time.time()
            log.info("worker %s ready after %.2fs",
                     record.worker_id, record.ready_at - record.started_at)
        reported.cancel()
        code = await exited
        self._workers.pop(record.worker_id, None)
        log.info("worker %s (pid %d) exited with code %d in state %s",
                 record.worker_id, record.process.pid, code, record.state)

    def report_ready(self, worker_id: str, port: int) -> WorkerRecord:
        """Pass a worker's ready callback to the worker's owner task."""
        record = self._workers.get(worker_id)
        if record is None or record.port != port:
            raise ApiError(404, "WORKER_NOT_FOUND", "this hive did not start that worker")
        record.ready_reported.set()
        return record

    async def stop_all(self) -> None:
        """Stop every worker: SIGTERM, grace period, SIGKILL."""
        records = list(self._workers.values())
        await asyncio.gather(*(
            processes.terminate(r.process, STOP_GRACE_S, f"worker {r.worker_id}") for r in records
        ))
        await asyncio.gather(*self._owners, return_exceptions=True)
