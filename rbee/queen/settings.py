"""What the queen runs with: its settings, built from its validated configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from rbee.common.auth import Keyring
from rbee.common.config_env import default_data_dir
from rbee.common.config_schema import same_named, timings_of
from rbee.common.defaults import DEFAULT_BACKEND_POLICY, reachable
from rbee.common.tunables import GpuLimits, shared_environment
from rbee.queen.model_table import Fallbacks, LiveModelTable
from rbee.queen.routing.backend_policy import BackendPolicy


@dataclass(frozen=True)
class QueenSettings:
    """What `rbee queen` (or `rbee up`) was started with."""

    host: str
    port: int
    hive_port: int
    data_dir: Path
    worker_port_start: int
    worker_slots: int
    worker_ctx_size: int
    start_hive: bool
    keyring: Keyring
    local_hive: bool = True
    """Serve node `localhost` from a hive on this machine."""
    manage_local_hive: bool = True
    """Start the local hive when it does not answer (False: systemd or another supervisor runs it)."""
    advertise_url: str = ""
    """The URL hives on other nodes send heartbeats to."""
    metrics_public: bool = False
    """Serve /metrics without a token."""
    hive_tunables: dict[str, str] = field(default_factory=dict)
    """The `RBEE_*` tunables of the queen's environment, given to the hives it starts over SSH."""
    backend: str = DEFAULT_BACKEND_POLICY
    """The backend of a request that names none."""
    model_backends: dict[str, str] = field(default_factory=dict)
    """Per model ref, the backend of its requests that name none."""
    gpu: GpuLimits = field(default_factory=GpuLimits)
    """Replicas per model (`gpu_max_replicas`, `gpu_replica_after_wait_s`)."""
    tls_cert: Path | None = None
    """The listener's certificate: with it the queen serves HTTPS only."""
    tls_key: Path | None = None
    models: LiveModelTable = field(default_factory=LiveModelTable)
    """The model table (aliases), replaced when a SIGHUP reloads the config file."""
    ready_public: bool = False
    """Serve /ready without a token."""

    @classmethod
    def from_config(
        cls, config: BaseModel, keyring: Keyring, start_hive: bool | None = None
    ) -> QueenSettings:
        """The settings of a validated queen configuration (with its tunables exported to this
        process's environment); `start_hive` overrides the configured one (`rbee up`)."""
        scheme = "https" if config.tls_cert else "http"
        return cls(**{
            **same_named(config, cls),
            "data_dir": config.data_dir or default_data_dir(),
            "start_hive": (config.start_hive if start_hive is None else start_hive) and config.local_hive,
            "keyring": keyring,
            "manage_local_hive": not config.external_hive,
            "advertise_url": config.advertise_url or f"{scheme}://{reachable(config.host)}:{config.port}",
            "hive_tunables": shared_environment(),
            "gpu": timings_of(config, GpuLimits),
            "models": LiveModelTable(config.models, Fallbacks(config.worker_ctx_size, config.worker_slots,
                                                              timings_of(config, GpuLimits).max_replicas)),
        })

    @property
    def local_queen_url(self) -> str:
        """The URL the local hive sends heartbeats to: loopback over plain HTTP, or with TLS the
        advertised URL (a name the certificate holds)."""
        return self.advertise_url if self.tls_cert else f"http://127.0.0.1:{self.port}"

    @property
    def backend_policy(self) -> BackendPolicy:
        """The policy requests without a `backend` follow."""
        return BackendPolicy(self.backend, dict(self.model_backends), self.models)
