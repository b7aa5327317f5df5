"""Resource preflight before every spawn: what a worker will need against what the machine has.

Need, by the worker's engine (measured on Gemma 3 270M):
- batched engine (the default: one model, one context whose KV cache holds `ctx_size` tokens
  per slot; 412 MB resident with one slot, 541 MB with 4, 1,062 MB with 16): RAM is a base for
  the process, the model file × 1.2 once, and per slot its KV cache and a compute buffer;
- simple engine (a context and a model copy per slot; 392 MB with one slot, 725 MB with two):
  the base plus, per slot, the model file × 1.2, its KV cache and a compute buffer;
- VRAM (GPU backends): the per-slot part on the GPU; RAM then only holds the base and a
  host copy of the weights while loading;
- disk: room for the worker's log.
A refusal is an ApiError (507 INSUFFICIENT_*, 400 BACKEND_UNAVAILABLE) whose details carry the
required and available bytes. The worker's address-space limit is derived from the need.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import psutil

from rbee.common.defaults import DEFAULT_ENGINE
from rbee.common.errors import ApiError
from rbee.hive import backends, gpus
from rbee.hive.gguf_header import GgufError, read_metadata

MIB = 1024 * 1024
BASE_BYTES = 128 * MIB
COMPUTE_BYTES_PER_SLOT = 32 * MIB
WEIGHTS_FACTOR = 1.2
KV_BYTES_PER_VALUE = 2
LOG_DISK_BYTES = 64 * MIB
ADDRESS_SPACE_FACTOR = 5
ADDRESS_SPACE_SLACK = 1024 * MIB
"""The worker's RLIMIT_AS is need × 5 + 1 GiB: llama.cpp reserves about 4.3× its resident
memory as address space (1.8 GB of virtual memory for 392 MB resident)."""


@dataclass(frozen=True)
class Need:
    """What one worker will need, in bytes, and on which backend and device."""

    ram_bytes: int
    vram_bytes: int
    disk_bytes: int
    backend: str
    device: int | None

    @property
    def address_space_limit(self) -> int:
        """The RLIMIT_AS the worker runs under, so a runaway cannot take the machine down."""
        return (self.ram_bytes + self.vram_bytes) * ADDRESS_SPACE_FACTOR + ADDRESS_SPACE_SLACK


def kv_bytes_per_token(model_path: Path) -> int:
    """Bytes of KV cache one token takes in one context (f16 keys and values, every layer)."""
    try:
        meta = read_metadata(model_path)
    except (GgufError, OSError) as exc:
        raise ApiError(400, "NOT_A_GGUF", "the model file has no readable GGUF header") from exc
    arch = str(meta.get("general.architecture", ""))

    def number(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", default)
        return int(value) if isinstance(value, int | float) else default

    layers, embedding = number("block_count"), number("embedding_length")
    heads = number("attention.head_count", 1) or 1
    heads_kv = number("attention.head_count_kv", heads) or heads
    key_length = number("attention.key_length", embedding // heads)
    value_length = number("attention.value_length", key_length)
    return layers * heads_kv * (key_length + value_length) * KV_BYTES_PER_VALUE


def estimate(
    model_path: Path, ctx_size: int, slots: int, backend: str, device: int | None,
    engine: str = DEFAULT_ENGINE,
) -> Need:
    """What a worker of `model_path` with `slots` slots of `ctx_size` tokens will need."""
    weights = int(model_path.stat().st_size * WEIGHTS_FACTOR)
    per_slot = ctx_size * kv_bytes_per_token(model_path) + COMPUTE_BYTES_PER_SLOT
    if engine == "simple":
        per_slot += weights
    shared = 0 if engine == "simple" else weights
    if backend == "cpu":
        return Need(BASE_BYTES + shared + slots * per_slot, 0, LOG_DISK_BYTES, backend, None)
    return Need(BASE_BYTES + weights, shared + slots * per_slot, LOG_DISK_BYTES, backend, device)


def _short(code: str, what: str, need: int, have: int, extra: dict[str, object] | None = None) -> ApiError:
    return ApiError(
        507, code,
        f"not enough {what} to start this worker: needs {need // MIB} MiB, {have // MIB} MiB available",
        {"required_bytes": need, "available_bytes": have, **(extra or {})},
    )


def check(need: Need, data_dir: Path) -> Need:
    """Refuse (ApiError) unless the backend exists and RAM, disk and VRAM suffice.

    Returns the need with the GPU chosen (the one with the most free memory unless a device
    was asked for).
    """
    backend = backends.get(need.backend)
    if not backend.available:
        raise ApiError(400, "BACKEND_UNAVAILABLE",
                       f"the {need.backend} backend cannot be used on this node: {backend.detail}",
                       {"backend": need.backend, "compiled": backend.compiled})
    available_ram = psutil.virtual_memory().available
    if need.ram_bytes > available_ram:
        raise _short("INSUFFICIENT_RAM", "memory", need.ram_bytes, available_ram)
    free_disk = shutil.disk_usage(data_dir).free
    if need.disk_bytes > free_disk:
        raise _short("INSUFFICIENT_DISK", "disk space", need.disk_bytes, free_disk)
    if need.backend != "cuda":
        return need
    devices = gpus.list_devices()
    chosen = max(devices, key=lambda gpu: gpu.free_bytes, default=None) if need.device is None else next(
        (gpu for gpu in devices if gpu.index == need.device), None)
    if chosen is None:
        raise ApiError(400, "BACKEND_UNAVAILABLE", "the requested GPU does not exist on this node",
                       {"backend": "cuda", "device": need.device})
    if need.vram_bytes > chosen.free_bytes:
        raise _short("INSUFFICIENT_VRAM", "GPU memory", need.vram_bytes, chosen.free_bytes,
                     {"device": chosen.index})
    return Need(need.ram_bytes, need.vram_bytes, need.disk_bytes, need.backend, chosen.index)


def resources(data_dir: Path) -> dict[str, object]:
    """What this node has now (for /v1/resources)."""
    memory = psutil.virtual_memory()
    disk = shutil.disk_usage(data_dir)
    return {
        "cpu_count": psutil.cpu_count() or 1,
        "ram_total_bytes": memory.total,
        "ram_available_bytes": memory.available,
        "disk_total_bytes": disk.total,
        "disk_free_bytes": disk.free,
        "gpus": [gpu.to_wire() for gpu in gpus.list_devices()],
    }
