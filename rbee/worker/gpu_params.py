"""The GPU half of llama.cpp's model parameters, built once for both engines: layers offloaded,
split mode, main GPU and tensor split."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from rbee.worker.generation import LoadSpec

ALL_LAYERS = 0x7FFFFFFF
"""llama.cpp's n_gpu_layers for every layer (the output layer included)."""


def layers_on_gpu(on_gpu: bool, gpu_layers: int | None) -> int:
    """`gpu_layers` when given, else every layer on a GPU backend and none on the CPU."""
    if gpu_layers is not None:
        return gpu_layers
    return ALL_LAYERS if on_gpu else 0


def _split_mode(name: str) -> int:
    import llama_cpp

    return {"none": llama_cpp.LLAMA_SPLIT_MODE_NONE, "layer": llama_cpp.LLAMA_SPLIT_MODE_LAYER,
            "row": llama_cpp.LLAMA_SPLIT_MODE_ROW}[name]


@dataclass(frozen=True)
class GpuParams:
    """Where the model's layers go."""

    n_gpu_layers: int
    main_gpu: int = 0
    split_mode: str = "none"
    """none (one GPU: `main_gpu`), layer or row (split over the visible GPUs)."""
    tensor_split: tuple[float, ...] | None = None
    """Each visible GPU's share of a split model, in device order."""

    def llama_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `llama_cpp.Llama` (which keeps its own tensor_split array)."""
        return {"n_gpu_layers": self.n_gpu_layers, "main_gpu": self.main_gpu,
                "split_mode": _split_mode(self.split_mode),
                "tensor_split": list(self.tensor_split) if self.tensor_split else None}

    def model_params(self) -> ModelParams:
        """llama.cpp's default model parameters with these GPU fields set."""
        import llama_cpp

        from rbee.worker.engine import amx_compiled_in

        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = self.n_gpu_layers
        params.main_gpu = self.main_gpu
        params.split_mode = _split_mode(self.split_mode)
        if amx_compiled_in():
            params.use_extra_bufts = False  # see engine._without_extra_buffer_types
        shares = None
        if self.tensor_split:
            devices = llama_cpp.llama_max_devices()
            if len(self.tensor_split) > devices:
                raise ValueError(f"llama.cpp splits over at most {devices} GPUs")
            shares = (ctypes.c_float * devices)(*self.tensor_split)
            params.tensor_split = shares
        return ModelParams(params, shares)


@dataclass(frozen=True)
class ModelParams:
    """llama.cpp model parameters with the float array their tensor_split points into: keep this
    object while the parameters are in use."""

    params: Any
    tensor_split: Any


def of(spec: LoadSpec) -> GpuParams:
    """The GPU parameters of a load spec."""
    return GpuParams(spec.gpu_layers, spec.device, spec.split_mode, spec.tensor_split)
