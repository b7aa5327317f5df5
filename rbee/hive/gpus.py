"""NVIDIA GPUs as NVML (nvidia-ml-py) reports them now; none when NVML or a driver is absent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rbee.common.config_env import environment

VISIBLE_DEVICE_VARIABLES = ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
"""What narrows the GPUs a hive may use: Nomad's NVIDIA device plugin and container runtimes set
the first (UUIDs), an operator the second (UUIDs or indexes); unset or `all` is every GPU, empty,
`none` or `void` none."""


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


def allowed(gpu: Gpu, environ: Mapping[str, str]) -> bool:
    """True unless a visible-devices variable of `environ` leaves `gpu` out."""
    for name in VISIBLE_DEVICE_VARIABLES:
        value = environ.get(name)
        if value is None or value.strip() == "all":
            continue
        if value.strip() in ("", "none", "void"):
            return False
        names = {part.strip() for part in value.split(",")}
        if gpu.uuid not in names and str(gpu.index) not in names:
            return False
    return True


def list_devices() -> list[Gpu]:
    """Every NVIDIA GPU this hive may use (see VISIBLE_DEVICE_VARIABLES); an empty list without
    the NVML library or a driver."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        found = [_read(pynvml, index) for index in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()
    environ = environment()
    return [gpu for gpu in found if allowed(gpu, environ)]

