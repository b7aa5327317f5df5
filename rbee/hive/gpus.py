"""NVIDIA GPUs as NVML (nvidia-ml-py) reports them now; none when NVML or a driver is absent."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    """One GPU as NVML reports it at one moment."""

    index: int
    uuid: str
    name: str
    total_bytes: int
    free_bytes: int
    used_bytes: int
    utilization_pct: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None

    def to_wire(self) -> dict[str, object]:
        """JSON form for /v1/resources."""
        return {"index": self.index, "uuid": self.uuid, "name": self.name,
                "total_bytes": self.total_bytes, "free_bytes": self.free_bytes,
                "used_bytes": self.used_bytes, "utilization_pct": self.utilization_pct,
                "temperature_c": self.temperature_c, "power_w": self.power_w}


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _optional(read, *args) -> float | None:  # type: ignore[no-untyped-def]
    """A reading some GPUs do not support (NVML_ERROR_NOT_SUPPORTED): None then."""
    import pynvml

    try:
        return float(read(*args))
    except pynvml.NVMLError:
        return None


def _read(pynvml, index: int) -> Gpu:  # type: ignore[no-untyped-def]
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        busy: float | None = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except pynvml.NVMLError:
        busy = None
    power_mw = _optional(pynvml.nvmlDeviceGetPowerUsage, handle)
    return Gpu(
        index, _text(pynvml.nvmlDeviceGetUUID(handle)), _text(pynvml.nvmlDeviceGetName(handle)),
        int(memory.total), int(memory.free), int(memory.used), busy,
        _optional(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU),
        None if power_mw is None else power_mw / 1000,
    )


def list_devices() -> list[Gpu]:
    """Every visible NVIDIA GPU; an empty list without the NVML library or a driver."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        return [_read(pynvml, index) for index in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()


def processes_on(uuid: str) -> list[tuple[int, int]]:
    """(pid, used bytes) of every compute process NVML sees on the GPU `uuid`."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        return [(int(p.pid), int(p.usedGpuMemory or 0))
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)]
    finally:
        pynvml.nvmlShutdown()
