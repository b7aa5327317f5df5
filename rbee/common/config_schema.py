"""The configuration schema of each daemon: every command-line option and every tunable.

One pydantic model per daemon (`schema("queen")`, `"hive"`, `"worker"`; `rbee up` uses the
queen's) gives each key its type, range and default. Options are read from `RBEE_<DAEMON>_<KEY>`
(e.g. `RBEE_QUEEN_PORT`), tunables from their shared `RBEE_<KEY>` (e.g. `RBEE_RATE_LIMIT_PER_S`).
`RELOADABLE` names the keys a SIGHUP applies to a running daemon.
"""

from __future__ import annotations

import ipaddress
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

from rbee.common.errors import ApiError
from rbee.common.tunables import ZERO_ALLOWED, Timings, env_name
from rbee.common.validation import MAX_DEVICE_ID, MAX_SLOTS, check_http_url, check_identifier, check_node_name

DAEMONS = ("queen", "hive", "worker")
DEFAULT_QUEEN_PORT = 8080
DEFAULT_HIVE_PORT = 9200
DEFAULT_WORKER_PORT = 8081
DEFAULT_CTX_SIZE = 2048
PEERS = {"queen": ("hive", "worker"), "hive": ("queen", "worker"), "worker": ("hive",)}
"""The daemons each daemon calls, so holds a token for."""
PATH_KEYS = frozenset({"data_dir", "model", "token_file", "queen_token_file", "hive_token_file",
                       "worker_token_file"})
"""Keys holding a file or folder; relative paths in a config file start at the file's folder."""
NO_ENV = frozenset({("worker", "threads")})
"""Options without a variable of their own: `RBEE_WORKER_THREADS` is the tunable `worker_threads`."""
RELOADABLE = frozenset({
    "log_level", "rate_limit_per_s", "rate_limit_burst", "max_concurrent_per_client", "failure_limit",
    "failure_window_s", "request_deadline_s", "failed_node_cooldown_s", "loading_timeout_s",
    "stall_timeout_s", "idle_unload_s", "restart_backoff_initial_s", "restart_backoff_max_s",
    "restart_jitter", "max_restarts", "restart_window_s", "admission_queue_depth", "admission_wait_max_s",
})
"""Keys a SIGHUP applies: the log level and the tunables the daemons read at each use."""


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
    port: Port = DEFAULT_QUEEN_PORT
    hive_port: Port = DEFAULT_HIVE_PORT
    data_dir: FilePath | None = None
    worker_port_start: Port = DEFAULT_WORKER_PORT
    worker_slots: Slots = 2
    worker_ctx_size: Positive = DEFAULT_CTX_SIZE
    local_hive: bool = True
    advertise_url: HttpUrl | None = None
    start_hive: bool = False
    external_hive: bool = False


class HiveOptions(_Options):
    """`rbee hive`."""

    queen_token_file: FilePath | None = None
    worker_token_file: FilePath | None = None
    port: Port = DEFAULT_HIVE_PORT
    data_dir: FilePath | None = None
    worker_port_start: Port = DEFAULT_WORKER_PORT
    ctx_size: Positive = DEFAULT_CTX_SIZE
    queen_url: HttpUrl | None = None
    advertise_host: Annotated[str, AfterValidator(_rule(check_node_name))] | None = None


class WorkerOptions(_Options):
    """`rbee worker`: model, port and worker_id have no default."""

    hive_token_file: FilePath | None = None
    model: Annotated[str, BeforeValidator(_not_empty)]
    port: Port
    worker_id: Annotated[str, AfterValidator(_rule(check_identifier))]
    hive_url: HttpUrl | None = None
    slots: Slots = 1
    ctx_size: Positive = DEFAULT_CTX_SIZE
    threads: Positive | None = None
    backend: Literal["cpu", "cuda", "metal"] = "cpu"
    device: Annotated[int, Number, Field(ge=0, le=MAX_DEVICE_ID)] | None = None
    engine: Literal["batched", "simple"] = "batched"


OPTIONS: dict[str, type[_Options]] = {"queen": QueenOptions, "hive": HiveOptions, "worker": WorkerOptions}


def _tunable(kind: type, default: float, low: float, below: float | None = None) -> tuple[Any, Any]:
    return Annotated[kind, Number, Field(ge=low, lt=below)], default


def _timing_fields() -> dict[str, tuple[Any, Any]]:
    """A schema field per `Timings` tunable, with the bounds `load_timings` enforces."""
    result = {}
    for item in fields(Timings):
        kind = int if item.type in ("int", int) else float
        low = 0 if item.name in ZERO_ALLOWED else (1 if kind is int else 1e-3)
        result[item.name] = _tunable(kind, item.default, low, 1 if item.name == "restart_jitter" else None)
    return result


def _ssh_fields() -> dict[str, tuple[Any, Any]]:
    """A schema field per SSH tunable (`ssh_<name>`, env `RBEE_SSH_<NAME>`), the queen's only."""
    from rbee.queen.nodes.ssh import SshTimings

    result = {}
    for item in fields(SshTimings):
        kind = int if item.type in ("int", int) else float
        low = 0 if item.name == "retries" else (1 if kind is int else 1e-3)
        result[f"ssh_{item.name}"] = _tunable(kind, item.default, low)
    return result


@cache
def schema(daemon: str) -> type[BaseModel]:
    """The model validating one daemon's whole configuration (options and tunables)."""
    tunables = {**_timing_fields(), **(_ssh_fields() if daemon == "queen" else {})}
    return create_model(f"{daemon.capitalize()}Config", __base__=OPTIONS[daemon], **tunables)


def tunable_keys(daemon: str) -> list[str]:
    """The keys of `daemon` that are tunables (shared environment names, inherited by children)."""
    return [key for key in schema(daemon).model_fields if key not in OPTIONS[daemon].model_fields]


@cache
def env_names(daemon: str) -> dict[str, str]:
    """The environment variable of each key of `daemon` that has one."""
    names = {key: f"RBEE_{daemon}_{key}".upper() for key in OPTIONS[daemon].model_fields
             if (daemon, key) not in NO_ENV}
    return {**names, **{key: env_name(key) for key in tunable_keys(daemon)}}


def timings_of(config: BaseModel) -> Timings:
    """The `Timings` a validated configuration sets."""
    return Timings(**{item.name: getattr(config, item.name) for item in fields(Timings)})
