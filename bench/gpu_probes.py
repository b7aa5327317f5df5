"""What `bench/gpu.py` watches while a level runs: GPU busy % and memory (NVML, sampled every
100 ms in a thread) and the CPU share of the busiest thread of the measured processes."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

SAMPLE_S = 0.1


class Gpu:
    """GPU 0 through NVML, or nothing where NVML or a GPU is missing (every figure None)."""

    def __init__(self) -> None:
        self._nvml = None
        self._handle = None
        with contextlib.suppress(Exception):
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._nvml = pynvml

    @property
    def name(self) -> str:
        """The GPU's name, or "no GPU"."""
        if self._nvml is None:
            return "no GPU (NVML unavailable)"
        name = self._nvml.nvmlDeviceGetName(self._handle)
        return name.decode() if isinstance(name, bytes) else name

    def memory_used(self) -> int | None:
        """Bytes of GPU memory in use."""
        return None if self._nvml is None else int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)

    def busy(self) -> int | None:
        """Percent of the last sample period a kernel ran."""
        return None if self._nvml is None else int(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def close(self) -> None:
        """Shut NVML down."""
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
            self._nvml = None


@dataclass(frozen=True)
class Usage:
    """What one level's run used."""

    gpu_busy_pct: float | None
    vram_bytes: int | None
    """Peak GPU memory in use during the run minus that before the system started."""
    thread_cpu_pct: float | None
    thread_owner: str
    """Which process the busiest thread belongs to (`worker`, `queen`, `llama-server`...)."""


def _role(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        line = process.cmdline()
        if "rbee" in line[:3] and len(line) > line.index("rbee") + 1:
            return line[line.index("rbee") + 1]
        return Path(line[0]).name
    return str(process.pid)


def _thread_times(processes: list[psutil.Process]) -> dict[tuple[int, int], float]:
    times: dict[tuple[int, int], float] = {}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            for thread in process.threads():
                times[process.pid, thread.id] = thread.user_time + thread.system_time
    return times


class Watch:
    """Context manager around one level's run: samples the GPU in a thread, diffs per-thread
    CPU times of `processes` (each with its descendants at entry) between entry and exit."""

    def __init__(self, gpu: Gpu, processes: list[psutil.Process], vram_before: int | None) -> None:
        self._gpu, self._vram_before = gpu, vram_before
        self._processes = list(processes)
        for process in processes:
            with contextlib.suppress(psutil.Error):
                self._processes.extend(process.children(recursive=True))
        self._busy: list[int] = []
        self._memory: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._cpu_before: dict[tuple[int, int], float] = {}
        self._wall = 0.0
        self.usage: Usage | None = None

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            busy, memory = self._gpu.busy(), self._gpu.memory_used()
            if busy is not None and memory is not None:
                self._busy.append(busy)
                self._memory.append(memory)

    def __enter__(self) -> Watch:
        self._cpu_before = _thread_times(self._processes)
        self._wall = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        wall = time.monotonic() - self._wall
        after = _thread_times(self._processes)
        deltas = {key: spent - self._cpu_before.get(key, 0.0) for key, spent in after.items()}
        busiest = max(deltas, key=deltas.__getitem__, default=None)
        owner = next((_role(p) for p in self._processes if busiest and p.pid == busiest[0]), "")
        vram = None
        if self._memory and self._vram_before is not None:
            vram = max(self._memory) - self._vram_before
        self.usage = Usage(
            gpu_busy_pct=statistics.mean(self._busy) if self._busy else None,
            vram_bytes=vram,
            thread_cpu_pct=100 * deltas[busiest] / wall if busiest and wall > 0 else None,
            thread_owner=owner,
        )
