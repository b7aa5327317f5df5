"""The hive's workers: spawning them and routing messages to each worker's owner task."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rbee.common import log_context, processes
from rbee.common.audit import Audit, no_audit
from rbee.common.auth import Keyring
from rbee.common.errors import ApiError
from rbee.common.ports import next_free_port, port_is_free
from rbee.common.tunables import Timings
from rbee.hive import preflight, worker_pids
from rbee.hive.catalog import ModelEntry
from rbee.hive.preflight import Need
from rbee.hive.restart_policy import RestartPolicy
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

    @property
    def logs_dir(self) -> Path:
        """Where each worker's output goes."""
        return self.data_dir / "logs"

    @property
    def pid_file(self) -> Path:
        """The on-disk list of worker PIDs, for cleaning up after a hive that died."""
        return self.data_dir / "workers.json"


def _backend_args(need: Need | None) -> list[str]:
    if need is None or need.backend == "cpu":
        return []
    return ["--backend", need.backend, *(["--device", str(need.device)] if need.device is not None else [])]


class WorkerSupervisor:
    """Starts workers, each with its own owner task, and keeps the registry of owners."""

    def __init__(self, settings: SupervisorSettings, timings: Timings, audit: Audit = no_audit) -> None:
        self.settings = settings
        self.timings = timings
        self._audit = audit
        self.policy = RestartPolicy(timings)
        self.draining = False
        self._owners: dict[str, WorkerOwner] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._port_lock = asyncio.Lock()

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
        self, model: ModelEntry, slots: int, backend: str = "cpu", device: int | None = None
    ) -> WorkerRecord:
        """Preflight, then start a worker for `model`; answers once the process exists (state
        `loading`). A failed preflight raises its ApiError and starts nothing."""
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
        need = await asyncio.to_thread(self._preflight, model, slots, backend, device)
        record = WorkerRecord(f"w-{uuid.uuid4().hex[:10]}", model, 0, slots, need=need,
                              host=self.settings.advertise_host)
        process = await self._launch(record)
        owner = WorkerOwner(record, self._launch, self.policy, self.timings, self._audit)
        self._owners[record.worker_id] = owner
        self._save_pids()
        task = asyncio.create_task(self._own(owner, process), name=f"owner-{record.worker_id}",
                                   context=log_context.only(worker_id=record.worker_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record

    def _preflight(self, model: ModelEntry, slots: int, backend: str, device: int | None) -> Need:
        need = preflight.estimate(Path(model.path), self.settings.ctx_size, slots, backend, device,
                                  os.environ.get(preflight.WORKER_ENGINE_ENV, preflight.DEFAULT_ENGINE))
        try:
            return preflight.check(need, self.settings.data_dir)
        except ApiError as err:
            log.warning("not spawning a worker for %s: %s", model.name, err.message)
            self._audit("worker.refused", model=model.name, code=err.code, **err.details)
            raise

    async def _own(self, owner: WorkerOwner, process: asyncio.subprocess.Process) -> None:
        try:
            await owner.run(process)
        finally:
            self._owners.pop(owner.record.worker_id, None)
            self._save_pids()
            log.info("worker %s left the registry in state %s",
                     owner.record.worker_id, owner.record.state)
            self._audit("worker.removed", worker_id=owner.record.worker_id, state=owner.record.state,
                        exit_code=owner.record.last_exit_code)

    async def _launch(self, record: WorkerRecord) -> asyncio.subprocess.Process:
        async with self._port_lock:
            taken = {o.record.port for o in self._owners.values() if o.record is not record}
            host = self.settings.worker_host
            if not (record.port and record.port not in taken and port_is_free(record.port, host)):
                record.port = next_free_port(self.settings.worker_port_start, taken, host)
            args = [
                sys.executable, "-m", "rbee", "worker",
                "--model", record.model.path,
                "--host", self.settings.worker_host,
                "--port", str(record.port),
                "--worker-id", record.worker_id,
                "--hive-url", self.settings.hive_url,
                "--slots", str(record.slots),
                "--ctx-size", str(self.settings.ctx_size),
                *self.settings.keyring.child_args("worker", ("hive", "worker")),
                *_backend_args(record.need),
            ]
            limit = record.need.address_space_limit if record.need else None
            process = await processes.spawn(args, self.settings.logs_dir / f"{record.worker_id}.log", limit)
        record.pid = process.pid
        log.info("spawned worker %s (pid %d) for %s on port %d",
                 record.worker_id, process.pid, record.model.name, record.port)
        self._audit("worker.spawn", worker_id=record.worker_id, pid=process.pid, model=record.model.name,
                    port=record.port, restarts=record.restarts)
        self._save_pids()
        return process

    def report_ready(self, worker_id: str, port: int) -> WorkerRecord:
        """Pass a worker's ready callback to its owner."""
        owner = self._owner(worker_id)
        if owner.record.port != port:
            raise ApiError(404, "WORKER_NOT_FOUND", "this hive does not own that worker")
        owner.post("ready")
        return owner.record

    def heartbeat(self, worker_id: str, body: dict[str, Any]) -> WorkerRecord:
        """Pass a worker's heartbeat to its owner."""
        owner = self._owner(worker_id)
        owner.post("heartbeat", body)
        return owner.record

    def stop(self, worker_id: str, reason: str) -> WorkerRecord:
        """Ask a worker's owner to drain and stop it for good."""
        owner = self._owner(worker_id)
        owner.post("stop", reason)
        self._audit("worker.stop", worker_id=worker_id, reason=reason)
        return owner.record

    def reload_all(self) -> None:
        """Pass a SIGHUP on to every running worker (through its owner), to re-read tokens."""
        for owner in self._owners.values():
            owner.post("reload")

    async def stop_all(self, reason: str) -> None:
        """Stop every worker (each drains, then SIGTERM → grace → SIGKILL) and wait."""
        self.draining = True
        for owner in list(self._owners.values()):
            owner.post("stop", reason)
            self._audit("worker.stop", worker_id=owner.record.worker_id, reason=reason)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _save_pids(self) -> None:
        pids = {o.record.worker_id: o.record.pid for o in self._owners.values() if o.record.pid}
        worker_pids.save(self.settings.pid_file, pids)

    async def leftovers_stopped(self) -> AsyncIterator[None]:
        """A cleanup context for the hive's start: before it serves, stop the workers a previous
        run of this hive left behind."""
        await asyncio.to_thread(worker_pids.stop_leftovers, self.settings.pid_file,
                                self.timings.sigterm_grace_s)
        yield
