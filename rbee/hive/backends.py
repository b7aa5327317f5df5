"""Which inference backends the installed llama-cpp-python build can use on this machine, and
which one a spawn asks for under the node's policy."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rbee.common.errors import ApiError
from rbee.hive import gpus

_SYSTEM_INFO_NAMES = {"cuda": "CUDA", "metal": "Metal"}


@dataclass(frozen=True)
class Backend:
    """One backend: compiled into the engine, usable now (and why not)."""

    name: str
    compiled: bool
    available: bool
    detail: str

    def to_wire(self) -> dict[str, object]:
        """JSON form for /v1/backends."""
        return {"name": self.name, "compiled": self.compiled, "available": self.available,
                "detail": self.detail}


@functools.cache
def _engine_info() -> tuple[str, bool]:
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode(errors="replace"), bool(
        llama_cpp.llama_supports_gpu_offload()
    )


def compiled(name: str) -> bool:
    """True when the installed engine build has the GPU backend `name` (cuda, metal)."""
    info, gpu_offload = _engine_info()
    return gpu_offload and f"{_SYSTEM_INFO_NAMES[name]} :" in info


def detect() -> list[Backend]:
    """Every known backend with its state, from the engine build and (for CUDA) NVML."""
    found = [Backend("cpu", True, True, "always available")]
    for name in ("cuda", "metal"):
        if not compiled(name):
            found.append(Backend(name, False, False, "not compiled into the installed llama-cpp-python"))
        elif name == "cuda":
            devices = gpus.list_devices()
            detail = f"{len(devices)} NVIDIA GPU(s)" if devices else "no NVIDIA GPU visible through NVML"
            found.append(Backend(name, True, bool(devices), detail))
        else:
            found.append(Backend(name, True, True, "compiled in"))
    return found


def get(name: str) -> Backend:
    """The state of one backend by name."""
    return next(backend for backend in detect() if backend.name == name)


def resolve(requested: str, node_policy: str) -> str:
    """The backend a spawn asking for `requested` (auto, cpu, cuda, metal) gets on a node whose
    policy is `node_policy`: `auto` there leaves the choice to the request; a node of one
    backend turns `auto` into it and refuses any other (400 BACKEND_UNAVAILABLE)."""
    if node_policy == "auto" or requested == node_policy:
        return requested
    if requested == "auto":
        return node_policy
    raise ApiError(400, "BACKEND_UNAVAILABLE",
                   f"this node serves only on {node_policy}; a {requested} worker is not allowed here",
                   {"backend": requested, "node_backend": node_policy})
