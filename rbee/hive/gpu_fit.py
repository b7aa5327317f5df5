"""Where a model goes on this node's GPUs: one GPU when it fits, a split over several, or as
many layers as fit on the best GPU (partial offload). Pure: rooms in, a placement or a 507 out."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from rbee.common.errors import ApiError
from rbee.hive.gpus import Gpu

MIB = 1024 * 1024


class VramShape(Protocol):
    """What the model needs on GPUs (`preflight.Footprint` is one)."""

    @property
    def offloadable_layers(self) -> int:
        """The repeating layers plus the output layer: every layer llama.cpp can offload."""
        ...

    @property
    def gpu_fixed_bytes(self) -> int:
        """What any GPU that takes part needs besides its layers (compute buffer)."""
        ...

    def vram_bytes(self, layers: int) -> int:
        """VRAM for `layers` layers on one GPU, compute buffer included (0 for no layer)."""
        ...


@dataclass(frozen=True)
class GpuRoom:
    """One GPU with what rbee may still book on it."""

    gpu: Gpu
    booked_bytes: int
    available_bytes: int
    """0 when the GPU is too hot to take a new worker."""

    def to_wire(self) -> dict[str, object]:
        """The GPU's JSON form for /v1/resources, with its bookings."""
        return {**self.gpu.to_wire(), "booked_bytes": self.booked_bytes,
                "available_bytes": self.available_bytes}


@dataclass(frozen=True)
class GpuShare:
    """The part of a worker one GPU holds."""

    index: int
    uuid: str
    bytes: int

    def to_wire(self) -> dict[str, object]:
        """JSON form for a worker record's `gpus`."""
        return {"index": self.index, "uuid": self.uuid}


@dataclass(frozen=True)
class Placement:
    """Where a worker's layers go: the GPUs (in tensor_split order) and how many layers."""

    shares: tuple[GpuShare, ...]
    gpu_layers: int
    tensor_split: tuple[float, ...] | None = None

    @property
    def vram_bytes(self) -> int:
        """VRAM booked over every GPU."""
        return sum(share.bytes for share in self.shares)


def _insufficient(required: int, room: GpuRoom | None, extra: dict[str, object]) -> ApiError:
    available = room.available_bytes if room else 0
    return ApiError(
        507, "INSUFFICIENT_VRAM",
        f"not enough GPU memory to start this worker: needs {required // MIB} MiB, "
        f"{available // MIB} MiB available",
        {"required_bytes": required, "available_bytes": available,
         "device": room.gpu.index if room else None, **extra},
    )


def _split(shape: VramShape, layers: int, rooms: Sequence[GpuRoom]) -> Placement | None:
    """Layers spread over `rooms` in proportion to what each has beyond its compute buffer."""
    fixed = shape.gpu_fixed_bytes
    spare = [(room, room.available_bytes - fixed) for room in rooms if room.available_bytes > fixed]
    variable = shape.vram_bytes(layers) - fixed
    if len(spare) < 2 or sum(extra for _, extra in spare) < variable:
        return None
    total = sum(extra for _, extra in spare)
    shares = tuple(GpuShare(room.gpu.index, room.gpu.uuid, fixed + variable * extra // total)
                   for room, extra in spare)
    return Placement(shares, layers, tuple(round(extra / total, 4) for _, extra in spare))


def _in_split_set(room: GpuRoom, split_gpus: Collection[str]) -> bool:
    return not split_gpus or room.gpu.uuid in split_gpus or str(room.gpu.index) in split_gpus


def place(
    shape: VramShape, rooms: Sequence[GpuRoom], fixed_layers: int | None = None,
    split_gpus: Collection[str] = (), device: int | None = None,
) -> Placement:
    """The placement of a worker of `shape` on `rooms`, or a 507 INSUFFICIENT_VRAM.

    Every layer on the GPU with the most room where they fit; else split over the GPUs of
    `split_gpus` (UUIDs or indexes; empty: all); else, unless `fixed_layers` is set, as many
    layers as fit on the best GPU. `device` limits the choice to that GPU (no split).
    """
    if device is not None:
        rooms = [room for room in rooms if room.gpu.index == device]
    ranked = sorted(rooms, key=lambda room: room.available_bytes, reverse=True)
    best = ranked[0] if ranked else None
    layers = shape.offloadable_layers if fixed_layers is None else min(fixed_layers, shape.offloadable_layers)
    whole = shape.vram_bytes(layers)
    if best is not None and whole <= best.available_bytes:
        return Placement((GpuShare(best.gpu.index, best.gpu.uuid, whole),), layers)
    if device is None:
        split = _split(shape, layers, [room for room in ranked if _in_split_set(room, split_gpus)])
        if split is not None:
            return split
    if fixed_layers is not None:
        raise _insufficient(whole, best, {"gpu_layers": layers})
    fitting = next((n for n in range(layers - 1, 0, -1)
                    if best is not None and shape.vram_bytes(n) <= best.available_bytes), 0)
    if best is None or fitting == 0:
        raise _insufficient(shape.vram_bytes(1), best, {"gpu_layers": 1})
    return Placement((GpuShare(best.gpu.index, best.gpu.uuid, shape.vram_bytes(fitting)),), fitting)
