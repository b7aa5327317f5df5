"""The worker's lifecycle: loading → idle ⇄ busy → draining → stopped (or failed)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from rbee.common.auth import Keyring
from rbee.common.notify import Notifier
from rbee.common.tunables import Timings
from rbee.worker import engine
from rbee.worker.faults import Faults
from rbee.worker.inference import InferenceService
from rbee.worker.slots import Slot, SlotPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    """What `rbee worker` was started with."""

    worker_id: str
    model_path: str
    host: str
    port: int
    slots: int
    ctx_size: int
    threads: int | None
    hive_url: str | None
    keyring: Keyring
    backend: str = "cpu"
    device: int | None = None


class WorkerRuntime:
    """Owns the worker's phase; once loaded it exposes the inference service."""

    def __init__(
        self,
        settings: WorkerSettings,
        timings: Timings,
        faults: Faults,
        stop: Callable[[], None],
        notifier: Notifier,
    ) -> None:
        self.settings = settings
        self._notifier = notifier
        self.timings = timings
        self.faults = faults
        self._stop = stop
        self.phase = "loading"
        self.slots_loaded = 0
        self.service: InferenceService | None = None
        self.changed = asyncio.Event()
        self.loaded = asyncio.Event()

    @property
    def progress(self) -> float:
        """Share of slots loaded, 0.0 to 1.0."""
        return self.slots_loaded / self.settings.slots

    @property
    def state(self) -> str:
        """loading, idle, busy, draining or failed."""
        if self.service is None or self.phase != "ready":
            return self.phase
        return "busy" if self.service.active_count else "idle"

    def status_line(self) -> str:
        """One line for systemd's STATUS=."""
        service = self.service
        busy = self.settings.slots - service.pool.free if service else 0
        model = os.path.basename(self.settings.model_path)
        return f"{self.state}, slots {busy}/{self.settings.slots} busy, model {model}"

    def decode_stalled(self) -> bool:
        """True when requests are running but no token came for the stall timeout."""
        return self.service is not None and self.service.stalled(
            time.monotonic(), self.timings.stall_timeout_s
        )

    def _mark_changed(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def load(self) -> None:
        """Load one context per slot off the event loop; a failure stops the worker."""
        loop = asyncio.get_running_loop()
        slots: list[Slot] = []
        try:
            for index in range(self.settings.slots):
                slot = Slot(index=index, context=None)
                slots.append(slot)
                await loop.run_in_executor(slot.executor, self.faults.on_load)
                slot.context = await loop.run_in_executor(
                    slot.executor,
                    engine.load_context,
                    self.settings.model_path,
                    self.settings.ctx_size,
                    self.settings.threads or self.timings.worker_threads or None,
                    self.settings.backend != "cpu",
                    self.settings.device or 0,
                )
                self.slots_loaded = index + 1
                self._mark_changed()
        except Exception as exc:
            log.error("loading %s failed: %s", self.settings.model_path, exc)
            SlotPool(slots).shutdown()
            self.phase = "failed"
            self._mark_changed()
            self._stop()
            return
        template = engine.chat_template_of(slots[0].context)
        self.service = InferenceService(
            self.settings.worker_id, SlotPool(slots), template, self.faults
        )
        self.phase = "ready"
        self._mark_changed()
        self.loaded.set()
        self._notifier.ready(self.status_line())
        log.info("worker %s ready with %d slot(s)", self.settings.worker_id, len(slots))

    async def drain(self) -> None:
        """Refuse new work, let running generations finish within the budget, cancel the rest."""
        if self.phase == "ready":
            self.phase = "draining"
            self._mark_changed()
        service = self.service
        if service is None:
            return
        deadline = time.monotonic() + self.timings.drain_budget_s
        while service.active_count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if service.active_count:
            log.warning("drain budget spent: cancelling %d generation(s)", service.active_count)
            service.cancel_all()
        service.pool.shutdown()
