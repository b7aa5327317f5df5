"""The worker's lifecycle: loading the model into its slots, readiness, telling the hive."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass

import aiohttp

from rbee.worker import engine
from rbee.worker.inference import InferenceService
from rbee.worker.slots import Slot, SlotPool

log = logging.getLogger(__name__)
READY_CALLBACK_ATTEMPTS = 5


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


class WorkerRuntime:
    """Owns the loading phase; afterwards exposes the inference service."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.phase = "loading"
        self.slots_loaded = 0
        self.service: InferenceService | None = None
        self.changed = asyncio.Event()

    @property
    def progress(self) -> float:
        """Share of slots loaded, 0.0 to 1.0."""
        return self.slots_loaded / self.settings.slots

    @property
    def state(self) -> str:
        """loading, idle, busy or failed."""
        if self.service is None:
            return self.phase
        return "busy" if self.service.active_count else "idle"

    def _mark_changed(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def load(self) -> None:
        """Load one context per slot off the event loop, then report readiness."""
        loop = asyncio.get_running_loop()
        slots: list[Slot] = []
        try:
            for index in range(self.settings.slots):
                slot = Slot(index=index, context=None)
                slot.context = await loop.run_in_executor(
                    slot.executor,
                    engine.load_context,
                    self.settings.model_path,
                    self.settings.ctx_size,
                    self.settings.threads,
                )
                slots.append(slot)
                self.slots_loaded = index + 1
                self._mark_changed()
        except Exception as exc:
            log.error("loading %s failed: %s", self.settings.model_path, exc)
            self.phase = "failed"
            self._mark_changed()
            signal.raise_signal(signal.SIGTERM)
            return
        template = engine.chat_template_of(slots[0].context)
        self.service = InferenceService(self.settings.worker_id, SlotPool(slots), template)
        self.phase = "ready"
        self._mark_changed()
        log.info("worker %s ready with %d slot(s)", self.settings.worker_id, len(slots))
        await self._tell_hive()

    async def _tell_hive(self) -> None:
        if not self.settings.hive_url:
            return
        url = f"{self.settings.hive_url.rstrip('/')}/v1/workers/ready"
        body = {"worker_id": self.settings.worker_id, "port": self.settings.port, "pid": os.getpid()}
        timeout = aiohttp.ClientTimeout(total=5)
        for attempt in range(READY_CALLBACK_ATTEMPTS):
            try:
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    async with session.post(url, json=body) as response:
                        if response.status < 300:
                            return
                        log.warning("hive refused ready callback: HTTP %d", response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("ready callback to hive failed: %s", exc)
            await asyncio.sleep(0.2 * 2**attempt)

    def shutdown(self) -> None:
        """Cancel running generations and stop the slot threads."""
        if self.service is not None:
            self.service.cancel_all()
            self.service.pool.shutdown()
