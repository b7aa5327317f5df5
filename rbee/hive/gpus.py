"""NVIDIA GPUs and their free memory through NVML (nvidia-ml-py); none when NVML is absent."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    """One GPU as NVML reports it."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int

    def to_wire(self) -> dict[str, object]:
        """JSON form for /v1/resources."""
        return {"index": self.index, "name": self.name, "total_bytes": self.total_bytes,
                "free_bytes": self.free_bytes}


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
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            devices.append(Gpu(index, name.decode() if isinstance(name, bytes) else name,
                               int(memory.total), int(memory.free)))
        return devices
    finally:
        pynvml.nvmlShutdown()


def most_free(devices: list[Gpu]) -> Gpu | None:
    """The GPU with the most free memory (the default choice for a new worker)."""
    return max(devices, key=lambda gpu: gpu.free_bytes, default=None)
