"""The configuration schema of each daemon: every command-line option and every tunable.

One pydantic model per daemon (`schema("queen")`, `"hive"`, `"worker"`; `rbee up` uses the
queen's) gives each key its type, range and default. Options are read from `RBEE_<DAEMON>_<KEY>`
(e.g. `RBEE_QUEEN_PORT`), tunables from their shared `RBEE_<KEY>` (e.g. `RBEE_RATE_LIMIT_PER_S`).
`RELOADABLE` names the keys a SIGHUP applies to a running daemon.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
)

from rbee.common import defaults
from rbee.common.errors import ApiError
from rbee.common.model_table import ModelTable
from rbee.common.tunables import SHARED, Group, SshTimings, Timings, tunables
from rbee.common.validation import (
    MAX_DEVICE_ID,
    MAX_GPU_LAYERS,
    MAX_SLOTS,
    MAX_TEMPLATE_CHARS,
    check_http_url,
    check_identifier,
    check_node_name,
)

DAEMONS = ("queen", "hive", "worker")
PEERS = {"queen": ("hive", "worker"), "hive": ("queen", "worker"), "worker": ("hive",)}
"""The daemons each daemon calls, so holds a token for."""
CHILDREN = {"queen": ("hive", "worker"), "hive": ("worker",), "worker": ()}
"""The daemons each one starts, which inherit its log format and metrics exposure."""
GROUPS = {"queen": (*SHARED, SshTimings), "hive": SHARED, "worker": SHARED}
"""The groups of tunables (`rbee.common.tunables`) of each daemon."""
PATH_KEYS = frozenset({"data_dir", "model", "token_file", "queen_token_file", "hive_token_file",
                       "worker_token_file", "tls_cert", "tls_key"})
"""Keys holding a file or folder; relative paths in a config file start at the file's folder."""
NO_ENV = frozenset({("worker", "threads")})
"""Options without a variable of their own: `RBEE_WORKER_THREADS` is the tunable `worker_threads`."""
RELOADABLE = frozenset({
    "log_level", "rate_limit_per_s", "rate_limit_burst", "max_concurrent_per_client", "failure_limit",
    "failure_window_s", "request_deadline_s", "failed_node_cooldown_s", "loading_timeout_s",
    "stall_timeout_s", "idle_unload_s", "restart_backoff_initial_s", "restart_backoff_max_s",
    "restart_jitter", "max_restarts", "restart_window_s", "admission_queue_depth", "admission_wait_max_s",
    "admission_key_share", "models",
})
"""Keys a SIGHUP applies: the log level, the tunables the daemons read at each use and the queen's
model table (new spawns and requests use it; running workers keep their settings)."""


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


def _not_empty(value: Any) -> Any:
    if value == "":
        raise ValueError("must not be empty")
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _rule(check: Callable[[str, Any], Any]) -> Callable[[Any, ValidationInfo], Any]:
    """A pydantic validator from one of rbee's input checks, keeping its rule as the message."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        try:
            return check(info.field_name or "value", value)
        except ApiError as exc:
            raise ValueError(exc.message.removeprefix(f"'{info.field_name}' ")) from None

    return validate


def _host(name: str, value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return check_node_name(name, value)
    return value


Number = BeforeValidator(_not_bool)
Port = Annotated[int, Number, Field(ge=1, le=65535)]
Positive = Annotated[int, Number, Field(ge=1)]
Slots = Annotated[int, Number, Field(ge=1, le=MAX_SLOTS)]
FilePath = Annotated[Path, BeforeValidator(_not_empty)]
Policy = Literal[defaults.BACKEND_POLICIES]
GpuLayers = Annotated[int, Number, Field(ge=0, le=MAX_GPU_LAYERS)]


def _json_text(value: Any) -> Any:
    """A mapping or list given as JSON text (from an environment variable or a flag)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError("must be JSON (an object or a list)") from None
    return value


ModelRef = Annotated[str, BeforeValidator(_not_empty)]
ModelBackends = Annotated[dict[ModelRef, Policy], BeforeValidator(_json_text)]
ModelGpuLayers = Annotated[dict[ModelRef, GpuLayers], BeforeValidator(_json_text)]
GpuNames = Annotated[list[ModelRef], BeforeValidator(_json_text)]
HttpUrl = Annotated[str, AfterValidator(_rule(check_http_url))]
Host = Annotated[str, AfterValidator(_rule(_host))]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)]


class _Options(BaseModel):
    """What every daemon takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Host = "127.0.0.1"
    log_level: LogLevel = "INFO"
    token_file: FilePath | None = None
    log_format: Literal["text", "json"] = "text"
    metrics_public: bool = False


class QueenOptions(_Options):
    """`rbee queen` and `rbee up`."""

    hive_token_file: FilePath | None = None
    worker_token_file: FilePath | None = None
    port: Port = defaults.QUEEN_PORT
    hive_port: Port = defaults.HIVE_PORT
    data_dir: FilePath | None = None
    worker_port_start: Port = defaults.WORKER_PORT_START
    worker_slots: Slots = 2
    worker_ctx_size: Positive = defaults.CTX_SIZE
    local_hive: bool = True
    advertise_url: HttpUrl | None = None
    start_hive: bool = False
    external_hive: bool = False
    backend: Policy = defaults.DEFAULT_BACKEND_POLICY
    """The backend a request gets when it names none."""
    model_backends: ModelBackends = Field(default_factory=dict)
    """Per model ref, the backend its requests get when they name none."""
    tls_cert: FilePath | None = None
    """PEM certificate chain of the queen's HTTPS listener (with `tls_key`; re-read on SIGHUP)."""
    tls_key: FilePath | None = None
    """PEM private key of `tls_cert`."""
    models: Annotated[ModelTable, BeforeValidator(_json_text)] = Field(default_factory=dict)
    """The model table: per alias, its ref and its workers' and requests' settings."""
    ready_public: bool = False
    """Serve /ready without a token (for a load balancer's health probe), as /health is."""


class HiveOptions(_Options):
    """`rbee hive`."""

    queen_token_file: FilePath | None = None
    worker_token_file: FilePath | None = None
    port: Port = defaults.HIVE_PORT
    data_dir: FilePath | None = None
    worker_port_start: Port = defaults.WORKER_PORT_START
    ctx_size: Positive = defaults.CTX_SIZE
    queen_url: HttpUrl | None = None
    advertise_host: Annotated[str, AfterValidator(_rule(check_node_name))] | None = None
    backend: Policy = defaults.DEFAULT_BACKEND_POLICY
    """What this node serves on: `auto` (a usable GPU, else the CPU), or only `cpu` / `cuda`."""
    model_gpu_layers: ModelGpuLayers = Field(default_factory=dict)
    """Per model ref, how many layers go to the GPU (default: all that fit)."""
    split_gpus: GpuNames = Field(default_factory=list)
    """GPUs (UUIDs or indexes) a model too big for one GPU may be split over; empty: any of them."""
    split_mode: Literal["layer", "row"] = "layer"
    """How a model split over several GPUs is spread (llama.cpp's split modes)."""


class WorkerOptions(_Options):
    """`rbee worker`: model, port and worker_id have no default."""

    hive_token_file: FilePath | None = None
    model: Annotated[str, BeforeValidator(_not_empty)]
    port: Port
    worker_id: Annotated[str, AfterValidator(_rule(check_identifier))]
    hive_url: HttpUrl | None = None
    slots: Slots = 1
    ctx_size: Positive = defaults.CTX_SIZE
    threads: Positive | None = None
    backend: Literal[defaults.BACKENDS] = defaults.BACKENDS[0]
    device: Annotated[int, Number, Field(ge=0, le=MAX_DEVICE_ID)] | None = None
    gpu_layers: GpuLayers | None = None
    """Layers on the GPU (default: every layer when the backend is a GPU's)."""
    split_mode: Literal[defaults.SPLIT_MODES] = "none"
    tensor_split: Annotated[list[Annotated[float, Field(ge=0)]], BeforeValidator(_json_text)] | None = None
    """Share of the model each visible GPU takes when split (llama.cpp's tensor_split)."""
    engine: Literal[defaults.ENGINES] = defaults.DEFAULT_ENGINE
    embedding: bool = False
    """Serve `/v1/embeddings` (a context with embeddings on) instead of generation."""
    chat_template: Annotated[str, Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)] | None = None
    """A Jinja chat template used instead of the GGUF's `tokenizer.chat_template`."""


OPTIONS: dict[str, type[_Options]] = {"queen": QueenOptions, "hive": HiveOptions, "worker": WorkerOptions}


def _tunable_fields(daemon: str) -> dict[str, tuple[Any, Any]]:
    """A schema field per tunable of `daemon`, with its bounds and default from `tunables`."""
    return {t.key: (Annotated[t.kind, Number, Field(ge=t.ge, lt=t.lt, description=t.unit)], t.default)
            for group in GROUPS[daemon] for t in tunables(group)}


@cache
def schema(daemon: str) -> type[BaseModel]:
    """The model validating one daemon's whole configuration (options and tunables)."""
    return create_model(f"{daemon.capitalize()}Config", __base__=OPTIONS[daemon], **_tunable_fields(daemon))


def flag(key: str) -> str:
    """The command-line flag of a key (`worker_port_start`: `--worker-port-start`)."""
    return "--" + key.replace("_", "-")


def tunable_keys(daemon: str) -> list[str]:
    """The keys of `daemon` that are tunables (shared environment names, inherited by children)."""
    return [key for key in schema(daemon).model_fields if key not in OPTIONS[daemon].model_fields]


@cache
def env_names(daemon: str) -> dict[str, str]:
    """The environment variable of each key of `daemon` that has one."""
    names = {key: f"RBEE_{daemon}_{key}".upper() for key in OPTIONS[daemon].model_fields
             if (daemon, key) not in NO_ENV}
    return {**names, **{t.key: t.variable for group in GROUPS[daemon] for t in tunables(group)}}


def same_named(config: BaseModel, target: type) -> dict[str, Any]:
    """The values of `config` for the fields of dataclass `target` that are named like one of its keys."""
    keys = type(config).model_fields
    return {item.name: getattr(config, item.name) for item in fields(target) if item.name in keys}


def timings_of(config: BaseModel, group: type[Group] = Timings) -> Group:
    """The tunables of `group` (by default `Timings`) a validated configuration sets."""
    return group(**{t.name: getattr(config, t.key) for t in tunables(group)})
