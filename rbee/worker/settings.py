"""What a worker runs with: its settings, built from its validated configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from rbee.common.auth import Keyring
from rbee.common.config_env import environment
from rbee.common.config_schema import same_named
from rbee.common.defaults import BACKENDS, DEFAULT_ENGINE
from rbee.common.errors import ApiError
from rbee.worker.engine import engine_offloads_to_gpu
from rbee.worker.faults import Faults, load_faults


@dataclass(frozen=True)
class WorkerSettings:
    """What `rbee worker` was started with."""

    worker_id: str
    model_path: str
    host: str
    port: int
    slots: int
    ctx_size: int
    threads: int | None
    hive_url: str | None
    keyring: Keyring
    backend: str = BACKENDS[0]
    device: int | None = None
    gpu_layers: int | None = None
    """Layers on the GPU; None: every layer on a GPU backend, none on the CPU."""
    split_mode: str = "none"
    tensor_split: tuple[float, ...] | None = None
    """Each visible GPU's share of a model split over several."""
    engine: str = DEFAULT_ENGINE
    """`batched` (one context, sequences decoded together) or `simple` (a context per slot)."""
    embedding: bool = False
    """Serve `/v1/embeddings` instead of generation."""
    chat_template: str | None = None
    """The chat template used instead of the GGUF's own."""
    metrics_public: bool = False
    """Serve /metrics without a token."""
    faults: Faults = field(default_factory=Faults)
    """Test-only faults to inject (`RBEE_FAULTS`)."""

    @classmethod
    def from_config(cls, config: BaseModel, keyring: Keyring) -> WorkerSettings:
        """The settings of a validated worker configuration, with the faults of the environment
        (FaultsRefused unless allowed). A GPU backend the installed engine lacks is refused here,
        before anything starts: there is no CPU fallback."""
        if config.backend != "cpu" and not engine_offloads_to_gpu():
            raise ApiError(503, "BACKEND_UNAVAILABLE", f"the installed llama-cpp-python has no "
                           f"{config.backend} support; refusing to fall back to the CPU")
        split = tuple(config.tensor_split) if config.tensor_split else None
        return cls(**{**same_named(config, cls), "model_path": config.model, "keyring": keyring,
                      "tensor_split": split, "faults": load_faults(environment())})
