"""What the hive runs with: its settings, built from its validated configuration."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import BaseModel

from rbee.common.auth import Keyring
from rbee.common.config_env import default_data_dir
from rbee.common.config_schema import same_named, timings_of
from rbee.common.defaults import reachable
from rbee.common.tunables import DownloadSettings, GpuLimits, HubSettings
from rbee.hive.preflight import GpuPolicy
from rbee.hive.supervisor import SupervisorSettings


@dataclass(frozen=True)
class HiveSettings:
    """What `rbee hive` was started with."""

    host: str
    port: int
    data_dir: Path
    worker_port_start: int
    ctx_size: int
    queen_url: str | None
    keyring: Keyring
    advertise_host: str = "127.0.0.1"
    """The address the queen and the workers use to reach this hive and its workers."""
    metrics_public: bool = False
    """Serve /metrics without a token."""
    downloads: DownloadSettings = field(default_factory=DownloadSettings)
    gpu: GpuPolicy = field(default_factory=GpuPolicy)
    """The node's backend policy, per-model GPU layers and split settings."""
    gpu_limits: GpuLimits = field(default_factory=GpuLimits)

    @classmethod
    def from_config(cls, config: BaseModel, keyring: Keyring) -> HiveSettings:
        """The settings of a validated hive configuration; the hub of the downloads comes from
        `RBEE_HF_ENDPOINT` and `HF_TOKEN` (TunableError when the endpoint is not a URL)."""
        return cls(**{
            **same_named(config, cls),
            "data_dir": config.data_dir or default_data_dir() / "hive",
            "keyring": keyring,
            "advertise_host": config.advertise_host or reachable(config.host),
            "downloads": replace(timings_of(config, DownloadSettings), hub=HubSettings.from_env()),
            "gpu": GpuPolicy(config.backend, dict(config.model_gpu_layers), tuple(config.split_gpus),
                             config.split_mode),
            "gpu_limits": timings_of(config, GpuLimits),
        })

    @property
    def url(self) -> str:
        """How the queen and the workers reach this hive."""
        return f"http://{self.advertise_host}:{self.port}"

    @property
    def supervision(self) -> SupervisorSettings:
        """How this hive starts its workers."""
        return SupervisorSettings(self.url, self.data_dir, self.host, self.advertise_host,
                                  self.worker_port_start, self.ctx_size, self.keyring, self.gpu,
                                  self.gpu_limits)
