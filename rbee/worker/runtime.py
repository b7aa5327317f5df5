"""The worker's lifecycle: loading → idle ⇄ busy → draining → stopped (or failed)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from enum import StrEnum

from rbee.common.notify import Notifier
from rbee.common.tunables import Timings
from rbee.common.wire import WorkerState
from rbee.worker.batch_engine import BatchEngine
from rbee.worker.embedding_engine import EmbeddingEngine
from rbee.worker.embedding_service import EmbeddingService
from rbee.worker.faults import Faults
from rbee.worker.generation import LoadSpec
from rbee.worker.gpu_params import layers_on_gpu
from rbee.worker.inference import InferenceService
from rbee.worker.settings import WorkerSettings
from rbee.worker.simple_engine import SimpleEngine
from rbee.worker.slots import SlotPool

log = logging.getLogger(__name__)
ENGINE_CLASSES = {"batched": BatchEngine, "simple": SimpleEngine}


class Phase(StrEnum):
    """The worker's lifecycle step: while `ready` its state is idle or busy, otherwise the
    worker state of the same name."""

    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


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
        self.phase = Phase.LOADING
        self.progress = 0.0
        """Share of the model loaded, 0.0 to 1.0."""
        self.service: InferenceService | EmbeddingService | None = None
        """Generation, or embeddings for a worker started with `embedding`."""
        self.changed = asyncio.Event()
        self.loaded = asyncio.Event()

    @property
    def state(self) -> WorkerState:
        """loading, idle, busy, draining or failed."""
        if self.service is None or self.phase is not Phase.READY:
            return WorkerState(self.phase)
        return WorkerState.BUSY if self.service.active_count else WorkerState.IDLE

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

    def _loaded_share(self, share: float) -> None:
        self.progress = share
        self._mark_changed()

    def _loaded_share_from(self, loop: asyncio.AbstractEventLoop) -> Callable[[float], None]:
        """`_loaded_share` for the loading thread (which also takes the `slow-load-step` fault)."""

        def loaded(share: float) -> None:
            self.faults.on_load_step()
            loop.call_soon_threadsafe(self._loaded_share, share)

        return loaded

    async def load(self) -> None:
        """Load the model into the chosen engine off the event loop; a failure stops the worker."""
        settings = self.settings
        sys.setswitchinterval(self.timings.worker_gil_switch_ms / 1000)
        spec = LoadSpec(
            model_path=settings.model_path,
            slots=settings.slots,
            ctx_size=settings.ctx_size,
            threads=settings.threads or self.timings.worker_threads or None,
            gpu_layers=layers_on_gpu(settings.backend != "cpu", settings.gpu_layers),
            device=settings.device or 0,
            split_mode=settings.split_mode,
            tensor_split=settings.tensor_split,
            prefill_chunk_tokens=self.timings.worker_prefill_chunk_tokens,
            prefix_copy_min_tokens=self.timings.worker_prefix_copy_min_tokens,
            on_progress=self._loaded_share_from(asyncio.get_running_loop()),
        )
        try:
            self.service = await self._service(spec)
        except Exception as exc:
            log.error("loading %s failed: %s", settings.model_path, exc)
            self.phase = Phase.FAILED
            self._mark_changed()
            self._stop()
            return
        self.phase = Phase.READY
        self.faults.on_ready()
        self._mark_changed()
        self.loaded.set()
        self._notifier.ready(self.status_line())
        log.info("worker %s ready with %d slot(s), %s engine", settings.worker_id, settings.slots,
                 "embedding" if settings.embedding else settings.engine)

    async def _service(self, spec: LoadSpec) -> InferenceService | EmbeddingService:
        """Load the model into the engine the settings choose and wrap it in its service."""
        settings = self.settings
        pool = SlotPool.of_size(settings.slots)
        if settings.embedding:
            embedder = await EmbeddingEngine.load(spec, self.faults)
            self._loaded_share(1.0)
            return EmbeddingService(settings.worker_id, pool, embedder)
        engine = await ENGINE_CLASSES[settings.engine].load(spec, self.faults, self._loaded_share)
        if settings.chat_template:
            engine.chat_template = settings.chat_template
        return InferenceService(settings.worker_id, pool, engine, self.timings.max_output_tokens)

    async def drain(self) -> None:
        """Refuse new work, let running generations finish within the budget, cancel the rest."""
        if self.phase is Phase.READY:
            self.phase = Phase.DRAINING
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
        await asyncio.to_thread(service.engine.shutdown)
