"""Resource preflight before every spawn: which backend, which GPUs, and what the worker will need
against what the machine has.

Need, by the worker's engine (measured on Gemma 3 270M on the CPU):
- batched engine (the default: one model, one context whose KV cache holds `ctx_size` tokens
  per slot; 412 MB resident with one slot, 541 MB with 4, 1,062 MB with 16): a base for the
  process, the weights once, and per slot its KV cache and a compute buffer;
- simple engine (a context and a model copy per slot; 392 MB with one slot, 725 MB with two):
  the weights once per slot;
- on a GPU (docs/gpu-placement.md): the weights (the file's size) and KV cache (f16, every
  layer) of the layers offloaded, plus a compute buffer; RAM then covers the layers left on
  the CPU. A layer's share is the weights ÷ (layers + 1) (the output layer counts as one) and
  the KV cache ÷ layers;
- disk: room for the worker's log.
A refusal is an ApiError (507 INSUFFICIENT_*, 400 BACKEND_UNAVAILABLE) whose details carry the
required and available bytes; nothing is booked or started then.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from rbee.common.defaults import DEFAULT_ENGINE
from rbee.common.errors import ApiError
from rbee.hive import backends, gpu_fit
from rbee.hive.gguf_header import GgufError, read_metadata
from rbee.hive.gpu_fit import MIB, GpuRoom, GpuShare, Placement
from rbee.hive.vram_ledger import VramLedger

BASE_BYTES = 128 * MIB
COMPUTE_BYTES_PER_SLOT = 32 * MIB
GPU_COMPUTE_BYTES = 256 * MIB
"""The compute buffer a GPU holds besides the per-slot part (a batch's activations and logits)."""
WEIGHTS_FACTOR = 1.2
KV_BYTES_PER_VALUE = 2
LOG_DISK_BYTES = 64 * MIB
ADDRESS_SPACE_FACTOR = 5
ADDRESS_SPACE_SLACK = 1024 * MIB
"""A CPU worker's RLIMIT_AS is need × 5 + 1 GiB: llama.cpp reserves about 4.3× its resident
memory as address space (1.8 GB of virtual memory for 392 MB resident). A GPU worker gets none:
the CUDA driver maps far more address space than any host figure."""


def _metadata(model_path: Path) -> Mapping[str, object]:
    try:
        return read_metadata(model_path)
    except (GgufError, OSError) as exc:
        raise ApiError(400, "NOT_A_GGUF", "the model file has no readable GGUF header") from exc


def _numbers(meta: Mapping[str, object]) -> dict[str, int]:
    arch = str(meta.get("general.architecture", ""))

    def number(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", default)
        return int(value) if isinstance(value, int | float) else default

    embedding = number("embedding_length")
    heads = number("attention.head_count", 1) or 1
    key_length = number("attention.key_length", embedding // heads)
    return {"layers": number("block_count"), "heads_kv": number("attention.head_count_kv", heads) or heads,
            "key_length": key_length, "value_length": number("attention.value_length", key_length)}


def _kv_per_token(n: Mapping[str, int]) -> int:
    return n["layers"] * n["heads_kv"] * (n["key_length"] + n["value_length"]) * KV_BYTES_PER_VALUE


def kv_bytes_per_token(model_path: Path) -> int:
    """Bytes of KV cache one token takes in one context (f16 keys and values, every layer)."""
    return _kv_per_token(_numbers(_metadata(model_path)))


@dataclass(frozen=True)
class Footprint:
    """What a worker of one model, slot count and context holds, wherever its layers go."""

    file_bytes: int
    """The GGUF's size: its tensors (the weights), near enough."""
    layers: int
    """Repeating layers (`block_count`)."""
    kv_bytes: int
    """The whole KV cache: every slot's `ctx_size` tokens."""
    slots: int
    copies: int = 1
    """Copies of the weights: one, or one per slot (the simple engine)."""

    @property
    def offloadable_layers(self) -> int:
        """The repeating layers plus the output layer."""
        return self.layers + 1

    @property
    def gpu_fixed_bytes(self) -> int:
        """The compute buffer any GPU that takes part holds."""
        return GPU_COMPUTE_BYTES + self.slots * COMPUTE_BYTES_PER_SLOT

    def _kv(self, gpu_layers: int) -> int:
        return self.kv_bytes * min(gpu_layers, self.layers) // self.layers

    def vram_bytes(self, gpu_layers: int) -> int:
        """VRAM with `gpu_layers` layers offloaded: their weights and KV cache, the compute buffer."""
        if gpu_layers <= 0:
            return 0
        weights = self.copies * self.file_bytes * min(gpu_layers, self.offloadable_layers)
        return self.gpu_fixed_bytes + weights // self.offloadable_layers + self._kv(gpu_layers)

    def ram_bytes(self, gpu_layers: int = 0) -> int:
        """RAM with `gpu_layers` layers offloaded: the base, the rest of the weights (× 1.2 for
        llama.cpp's host buffers), their KV cache and the per-slot compute buffers."""
        on_cpu = self.offloadable_layers - min(gpu_layers, self.offloadable_layers)
        weights = self.copies * int(self.file_bytes * WEIGHTS_FACTOR) * on_cpu // self.offloadable_layers
        return (BASE_BYTES + weights + self.kv_bytes - self._kv(gpu_layers)
                + self.slots * COMPUTE_BYTES_PER_SLOT)


def footprint(model_path: Path, ctx_size: int, slots: int, engine: str = DEFAULT_ENGINE) -> Footprint:
    """The footprint of a worker of `model_path` with `slots` slots of `ctx_size` tokens."""
    numbers = _numbers(_metadata(model_path))
    return Footprint(model_path.stat().st_size, max(1, numbers["layers"]),
                     slots * ctx_size * _kv_per_token(numbers), slots, slots if engine == "simple" else 1)


@dataclass(frozen=True)
class Need:
    """What one worker will need, in bytes, and where it runs."""

    ram_bytes: int
    disk_bytes: int
    backend: str
    placement: Placement | None = None
    """The GPUs and layers of a cuda worker."""
    all_layers: int = 0
    """The model's offloadable layers: fewer on the GPUs is a partial offload."""
    split_mode: str = "none"

    @property
    def vram_bytes(self) -> int:
        """VRAM booked over every GPU."""
        return self.placement.vram_bytes if self.placement else 0

    @property
    def gpus(self) -> tuple[GpuShare, ...]:
        """The worker's GPUs, in tensor_split order."""
        return self.placement.shares if self.placement else ()

    @property
    def device(self) -> int | None:
        """The index of the worker's first GPU."""
        return self.gpus[0].index if self.gpus else None

    @property
    def gpu_layers(self) -> int:
        """Layers on the GPUs."""
        return self.placement.gpu_layers if self.placement else 0

    @property
    def partial(self) -> bool:
        """True when some layers stay on the CPU."""
        return self.placement is not None and self.gpu_layers < self.all_layers

    @property
    def address_space_limit(self) -> int | None:
        """The RLIMIT_AS a CPU worker runs under, so a runaway cannot take the machine down."""
        if self.backend != "cpu":
            return None
        return self.ram_bytes * ADDRESS_SPACE_FACTOR + ADDRESS_SPACE_SLACK


@dataclass(frozen=True)
class GpuPolicy:
    """The node's GPU settings (hive options `backend`, `model_gpu_layers`, `split_*`)."""

    backend: str = "auto"
    model_gpu_layers: Mapping[str, int] = field(default_factory=dict)
    split_gpus: tuple[str, ...] = ()
    split_mode: str = "layer"


@dataclass(frozen=True)
class Ask:
    """One spawn: the worker's id, its model, slots, context, engine, and the backend asked for."""

    worker_id: str
    model_name: str
    model_path: Path
    ctx_size: int
    slots: int
    backend: str = "auto"
    device: int | None = None
    engine: str = DEFAULT_ENGINE
    gpu_layers: int | None = None
    """Layers on the GPU the spawn asked for (None: the node's `model_gpu_layers`, else all that fit)."""


def _short(code: str, what: str, need: int, have: int) -> ApiError:
    return ApiError(
        507, code,
        f"not enough {what} to start this worker: needs {need // MIB} MiB, {have // MIB} MiB available",
        {"required_bytes": need, "available_bytes": have},
    )


def unavailable(backend: str, reason: str, **details: object) -> ApiError:
    """The 400 BACKEND_UNAVAILABLE of a spawn this node cannot run on `backend`."""
    return ApiError(400, "BACKEND_UNAVAILABLE",
                    f"the {backend} backend cannot be used on this node: {reason}",
                    {"backend": backend, **details})


@dataclass(frozen=True)
class HostRoom:
    """The RAM the hive's own workers hold, for one preflight."""

    booked_bytes: int = 0
    """Every live worker's `ram_bytes`."""
    budget_bytes: int = 0
    """`ram_budget_mib` in bytes; 0: no budget, only the machine's available RAM."""
    freed_bytes: int = 0
    """What the workers a trial counts as stopped hold (part of `booked_bytes`)."""
    gone: frozenset[str] = frozenset()
    """Those workers: their GPU bookings are left out too."""

    def available(self, machine_available: int) -> int:
        """RAM a new worker may take: the machine's plus what the gone workers free, within the budget."""
        available = machine_available + self.freed_bytes
        if self.budget_bytes:
            available = min(available, self.budget_bytes - self.booked_bytes + self.freed_bytes)
        return max(0, available)

    @property
    def trial(self) -> bool:
        """True when the preflight only tries whether stopping `gone` would make room (books nothing)."""
        return bool(self.gone)


def check_host(need: Need, data_dir: Path, room: HostRoom = HostRoom()) -> Need:
    """Refuse (507) unless RAM and disk suffice."""
    available_ram = room.available(psutil.virtual_memory().available)
    if need.ram_bytes > available_ram:
        raise _short("INSUFFICIENT_RAM", "memory", need.ram_bytes, available_ram)
    free_disk = shutil.disk_usage(data_dir).free
    if need.disk_bytes > free_disk:
        raise _short("INSUFFICIENT_DISK", "disk space", need.disk_bytes, free_disk)
    return need


def _chooser(ask: Ask, shape: Footprint, policy: GpuPolicy, fixed: int | None):
    def choose(rooms: Sequence[GpuRoom]) -> Placement:
        if not rooms:
            raise unavailable("cuda", "no NVIDIA GPU visible through NVML", compiled=True)
        if ask.device is not None and all(room.gpu.index != ask.device for room in rooms):
            raise unavailable("cuda", "the requested GPU does not exist on this node", device=ask.device)
        return gpu_fit.place(shape, rooms, fixed, policy.split_gpus, ask.device)

    return choose


def _on_cuda(ask: Ask, shape: Footprint, policy: GpuPolicy, ledger: VramLedger, data_dir: Path,
             room: HostRoom) -> Need:
    """Book the worker's GPUs (ApiError when it cannot run there) and check the host."""
    if not backends.compiled("cuda"):
        raise unavailable("cuda", "not compiled into the installed llama-cpp-python", compiled=False)
    fixed = ask.gpu_layers if ask.gpu_layers is not None else policy.model_gpu_layers.get(ask.model_name)
    if fixed == 0:
        raise unavailable("cuda", f"gpu_layers puts no layer of {ask.model_name} on a GPU")
    placement = ledger.book(ask.worker_id, _chooser(ask, shape, policy, fixed), room.gone, not room.trial)
    split_mode = policy.split_mode if len(placement.shares) > 1 else "none"
    need = Need(shape.ram_bytes(placement.gpu_layers), LOG_DISK_BYTES, "cuda", placement,
                shape.offloadable_layers, split_mode)
    try:
        return check_host(need, data_dir, room)
    except ApiError:
        if not room.trial:
            ledger.release(ask.worker_id)
        raise


def plan(ask: Ask, policy: GpuPolicy, ledger: VramLedger, data_dir: Path,
         room: HostRoom = HostRoom()) -> Need:
    """Resolve the backend, place and book a cuda worker's GPUs, check RAM (the machine's and the
    hive's budget, `room`) and disk.

    `auto` runs on cuda when the engine has it and a GPU can take the model fully or partly,
    else on the CPU; a named backend never falls back. Raises the refusal's ApiError. A trial
    (`room.gone`) books nothing.
    """
    backend = backends.resolve(ask.backend, policy.backend)
    shape = footprint(ask.model_path, ask.ctx_size, ask.slots, ask.engine)
    if backend in ("cuda", "auto"):
        try:
            return _on_cuda(ask, shape, policy, ledger, data_dir, room)
        except ApiError as err:
            if backend == "cuda" or err.code == "INSUFFICIENT_RAM":
                raise
    elif backend == "metal":
        state = backends.get("metal")
        if not state.available:
            raise unavailable("metal", state.detail, compiled=state.compiled)
        return check_host(Need(shape.ram_bytes(), LOG_DISK_BYTES, "metal"), data_dir, room)
    return check_host(Need(shape.ram_bytes(), LOG_DISK_BYTES, "cpu"), data_dir, room)


def resources(data_dir: Path, rooms: Sequence[GpuRoom]) -> dict[str, object]:
    """What this node has now (for /v1/resources), each GPU with its bookings."""
    memory = psutil.virtual_memory()
    disk = shutil.disk_usage(data_dir)
    return {
        "cpu_count": psutil.cpu_count() or 1,
        "ram_total_bytes": memory.total,
        "ram_available_bytes": memory.available,
        "disk_total_bytes": disk.total,
        "disk_free_bytes": disk.free,
        "gpus": [room.to_wire() for room in rooms],
    }
