"""The hive's bookings of GPU memory, one per worker, and what each GPU still has for rbee.

Available on a GPU = min(NVML free − bookings of workers still loading (their memory is not
in NVML yet), budget − every booking) − reserve, where the budget is `gpu_vram_budget_mib` or
the whole GPU; a GPU at or above `gpu_max_temperature_c` has nothing available. Choosing and
booking happen under one lock, so two spawns at once never claim the same free memory. A trial
for eviction counts some loaded workers as gone: their bookings are left out and their memory
added to NVML's free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rbee.common.tunables import GpuLimits
from rbee.hive import gpus
from rbee.hive.gpu_fit import MIB, GpuRoom, GpuShare, Placement
from rbee.hive.gpus import Gpu


@dataclass
class _Booking:
    shares: tuple[GpuShare, ...]
    loading: bool = True


class VramLedger:
    """The one owner of GPU bookings: booked at spawn, released when the worker leaves."""

    def __init__(self, limits: GpuLimits, devices: Callable[[], list[Gpu]] = gpus.list_devices) -> None:
        """`devices` reads the GPUs now (NVML; tests pass their own)."""
        self._limits = limits
        self._devices = devices
        self._lock = threading.Lock()
        self._bookings: dict[str, _Booking] = {}

    def _room(self, gpu: Gpu, gone: frozenset[str] = frozenset()) -> GpuRoom:
        """What `gpu` has for a new worker; the bookings of `gone` (loaded workers a trial counts as
        stopped) are left out and their memory counted as free."""
        limits = self._limits
        mine = [(share.bytes, booking.loading, worker_id in gone)
                for worker_id, booking in self._bookings.items()
                for share in booking.shares if share.uuid == gpu.uuid]
        booked = sum(size for size, _, left in mine if not left)
        loading = sum(size for size, is_loading, left in mine if is_loading and not left)
        freed = sum(size for size, is_loading, left in mine if left and not is_loading)
        budget = limits.vram_budget_mib * MIB or gpu.total_bytes
        available = min(gpu.free_bytes + freed - loading, budget - booked) - limits.reserve_mib * MIB
        too_hot = gpu.temperature_c is not None and gpu.temperature_c >= limits.max_temperature_c
        return GpuRoom(gpu, booked, 0 if too_hot else max(0, available))

    def rooms(self) -> list[GpuRoom]:
        """Every GPU now with its bookings and what is still available."""
        with self._lock:
            return [self._room(gpu) for gpu in self._devices()]

    def book(self, worker_id: str, choose: Callable[[Sequence[GpuRoom]], Placement],
             gone: frozenset[str] = frozenset(), keep: bool = True) -> Placement:
        """Read the GPUs, let `choose` place the worker (it may raise) and book what it chose; with
        `gone` the rooms are as if those workers had stopped, and without `keep` nothing is booked
        (a trial of whether stopping them would make room)."""
        with self._lock:
            placement = choose([self._room(gpu, gone) for gpu in self._devices()])
            if keep:
                self._bookings[worker_id] = _Booking(placement.shares)
            return placement

    def loading(self, worker_id: str) -> None:
        """A new process of the worker started: its memory is not in NVML's figures yet."""
        with self._lock:
            if (booking := self._bookings.get(worker_id)) is not None:
                booking.loading = True

    def loaded(self, worker_id: str) -> None:
        """The worker's model is loaded: NVML's free memory now counts it."""
        with self._lock:
            if (booking := self._bookings.get(worker_id)) is not None:
                booking.loading = False

    def release(self, worker_id: str) -> None:
        """The worker left the registry: its memory is free for others."""
        with self._lock:
            self._bookings.pop(worker_id, None)
