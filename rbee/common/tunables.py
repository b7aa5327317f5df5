"""Every tunable rbee uses (timings, limits, audit, downloads, SSH), with its unit, bounds and default.

A tunable is a field of one of the groups below, declared with `tunable(default, unit, …)`. Its
config key is the group's `PREFIX` plus the field name, its environment variable `RBEE_<KEY>`
(for example `RBEE_HEARTBEAT_INTERVAL_S=0.5`, `RBEE_SSH_RETRIES=0`). The config schema and the
environment overrides (`load`) both take the bounds from here. Child processes inherit the
variables, so one setting on the queen reaches its hives and workers; an invalid value stops the
daemon with a message naming the variable.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

Group = TypeVar("Group")
DOWNLOAD_JITTER = 0.2
"""Relative random spread of each download retry delay (±20 %)."""
HF_ENDPOINT_ENV = "RBEE_HF_ENDPOINT"
HF_STANDARD_ENDPOINT_ENV = "HF_ENDPOINT"
HF_TOKEN_ENV = "HF_TOKEN"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


class TunableError(ValueError):
    """An environment override that is not a valid value."""


def tunable(default: float, unit: str, *, ge: float | None = None, lt: float | None = None) -> Any:
    """A tunable field: its default, its unit, the least value allowed (default: above zero, that is
    1 for a whole number and 0.001 for a number) and the value it must stay below, if any."""
    return field(default=default, metadata={"unit": unit, "ge": ge, "lt": lt})


@dataclass(frozen=True)
class Tunable:
    """One tunable as a config file and the environment see it."""

    name: str
    """The field of its group."""
    key: str
    variable: str
    kind: type[int] | type[float]
    default: float
    unit: str
    ge: float
    lt: float | None

    def parse(self, text: str) -> float:
        """The value `text` of the variable stands for, checked (TunableError naming the variable)."""
        try:
            value = self.kind(text)
        except ValueError as exc:
            raise TunableError(f"{self.variable} must be a {self.kind.__name__}") from exc
        if value < self.ge or (self.lt is not None and value >= self.lt):
            raise TunableError(f"{self.variable} is out of range")
        return value


@cache
def tunables(group: type) -> tuple[Tunable, ...]:
    """The tunables of one of the groups below, in the order they are declared."""
    result = []
    for item in fields(group):
        meta = item.metadata
        if "unit" not in meta:
            continue
        kind = int if item.type in ("int", int) else float
        ge = (1 if kind is int else 1e-3) if meta["ge"] is None else meta["ge"]
        key = group.PREFIX + item.name
        variable = f"RBEE_{key.upper()}"
        result.append(Tunable(item.name, key, variable, kind, item.default, meta["unit"], ge, meta["lt"]))
    return tuple(result)


def load(group: type[Group], environ: Mapping[str, str] | None = None) -> Group:
    """`group`'s defaults with the overrides in `environ` (default: this process's) applied and checked."""
    environ = os.environ if environ is None else environ
    return group(**{t.name: t.parse(environ[t.variable]) for t in tunables(group) if t.variable in environ})


@dataclass(frozen=True)
class Timings:
    """Lifecycle timings and limits (seconds unless the name says otherwise)."""

    PREFIX: ClassVar[str] = ""

    heartbeat_interval_s: float = tunable(2.0, "s")
    """How often workers report to their hive and hives to the queen."""
    stale_after_missed: int = tunable(3, "heartbeats")
    """Heartbeats missed in a row before a worker or node counts as stale."""
    stall_timeout_s: float = tunable(10.0, "s")
    """A busy worker that produced no token for this long has a stalled decode loop."""
    loading_timeout_s: float = tunable(300.0, "s")
    """A worker still loading after this long is killed as hung."""
    idle_unload_s: float = tunable(600.0, "s")
    """A worker idle for this long is stopped to free memory."""
    evict_idle: int = tunable(1, "0/1", ge=0, lt=2)
    """1: a spawn that lacks RAM or VRAM first stops the least recently used idle workers of the hive
    whose memory makes it fit (a worker with a slot in use is never stopped); 0: it gets the 507."""
    ram_budget_mib: int = tunable(0, "MiB", ge=0)
    """The most RAM the hive's workers may take together, by their preflight figures; 0: only the
    machine's available RAM limits them."""
    restart_backoff_initial_s: float = tunable(1.0, "s")
    """Delay before the first restart of a crashed worker; doubles per attempt."""
    restart_backoff_max_s: float = tunable(60.0, "s")
    """Upper bound of the restart delay."""
    restart_jitter: float = tunable(0.2, "fraction", ge=0, lt=1)
    """Relative random spread applied to each restart delay (0.2 = ±20 %)."""
    max_restarts: int = tunable(5, "restarts", ge=0)
    """Restarts per model within the window before its circuit breaker opens."""
    restart_window_s: float = tunable(300.0, "s")
    """Window of the circuit breaker."""
    drain_budget_s: float = tunable(30.0, "s")
    """How long in-flight work may finish after a stop was asked for."""
    sigterm_grace_s: float = tunable(10.0, "s")
    """How long a child may take to exit after SIGTERM before SIGKILL."""
    admission_queue_depth: int = tunable(1024, "requests", ge=0)
    """Requests that may wait at the queen for a slot of one model; more are refused with 429."""
    admission_wait_max_s: float = tunable(120.0, "s")
    """The longest a request waits in the admission queue before 503 (its deadline may end it sooner)."""
    admission_key_share: float = tunable(1.0, "share of depth", ge=0.01, lt=1.001)
    """Share of `admission_queue_depth` one API key may hold in a model's queue (at least one
    place); more are refused with 429 `QUEUE_FULL`. Below 1 it keeps room for the other keys."""
    failed_node_cooldown_s: float = tunable(30.0, "s")
    """A node whose hive could not be started is passed over this long by requests naming no node."""
    prefix_affinity_block_chars: int = tunable(64, "bytes")
    """Prompt text hashed per key of prefix affinity (the queen's guess of which worker holds a
    request's prompt prefix): a prompt shorter than one block gets no affinity."""
    prefix_affinity_blocks: int = tunable(64, "blocks")
    """Blocks at the start of a prompt that prefix affinity hashes (64 × 64 bytes: 4 KiB)."""
    prefix_affinity_entries: int = tunable(65536, "keys")
    """Prefix keys the queen remembers, the least recently used forgotten first (about 100 bytes each)."""
    prefix_affinity_slack: float = tunable(0.25, "share of slots", ge=0, lt=1.001)
    """How much busier (in-flight requests over slots) the worker holding a request's prefix may be
    than the least busy worker and still be preferred; 0 prefers it only when no worker is less busy."""
    request_deadline_s: float = tunable(300.0, "s")
    """Deadline the queen gives a request that arrives without `X-Request-Deadline`."""
    upstream_connect_timeout_s: float = tunable(5.0, "s")
    """How long the queen waits to connect to a hive or a worker before the attempt fails."""
    worker_threads: int = tunable(0, "threads", ge=0)
    """llama.cpp threads per worker context when `--threads` is not given; 0 = every core.
    (Measured on 2 cores with Gemma 3 270M: all cores give 31 tokens/s to one stream and the
    same 35 tokens/s aggregate to two streams as one thread per slot, which gives 19 to one.)"""
    worker_prefill_chunk_tokens: int = tunable(384, "tokens", lt=513)
    """Prompt tokens one decode step of the batched engine takes while other sequences decode (at
    most its 512-token batch): a long prompt then delays their next token by a chunk's time, not
    the whole prompt's; larger chunks let many joining prompts in sooner (384 against 128: 22 % more
    tokens/s and half the time to first token at 64 streams of an 8B model on an H200)."""
    worker_prefix_copy_min_tokens: int = tunable(32, "tokens", ge=0)
    """A prompt joining the batched engine copies another sequence's KV cells when they hold at
    least this many more of its leading tokens than its own slot's cells: a copy moves a whole
    sequence's cells (context × layers), a cut is free, and decoding a few tokens costs less."""
    worker_gil_switch_ms: float = tunable(0.5, "ms", ge=0.05, lt=1000)
    """Python's thread switch interval in a worker (`sys.setswitchinterval`): how long its decode
    loop may wait for the interpreter lock that the event loop holds (Python's default: 5 ms;
    0.5 ms gave 3 % more tokens/s at 64 streams of an 8B model on an H200, docs/gpu.md)."""
    max_output_tokens: int = tunable(0, "tokens", ge=0)
    """The most tokens a worker generates for a request without `max_tokens`; 0 = until the end of
    text or the context is full (what OpenAI, llama-server and vLLM do)."""
    rate_limit_per_s: float = tunable(50.0, "requests/s", ge=0)
    """Requests per second each client (token) may make at the queen, sustained; 0 = unlimited."""
    rate_limit_burst: int = tunable(100, "requests")
    """Requests a client may make at once above its sustained rate (token-bucket size)."""
    max_concurrent_per_client: int = tunable(256, "requests", ge=0)
    """Requests one client may have in flight at the queen at once; 0 = unlimited."""
    key_usage_flush_s: float = tunable(5.0, "s", lt=3600)
    """How often the queen writes the requests and tokens counted per named key to its key store."""
    failure_limit: int = tunable(30, "failures", ge=0)
    """Auth or validation failures one address may cause within `failure_window_s` before its
    requests are refused with 429 for the rest of the window; 0 = never."""
    failure_window_s: float = tunable(60.0, "s")
    """Window over which failures are counted."""
    audit_max_bytes: int = tunable(10_000_000, "bytes")
    """Size at which an audit log segment is closed and a new one begun."""
    audit_fsync: int = tunable(1, "0/1", ge=0)
    """1: each audit record is fsync'ed before the request goes on; 0: left to the OS."""

    @property
    def stale_after_s(self) -> float:
        """Silence after which a heartbeat source is stale."""
        return self.heartbeat_interval_s * self.stale_after_missed

    @property
    def hive_stop_grace_s(self) -> float:
        """How long a hive may take to stop after SIGTERM before SIGKILL: its drain, then its
        workers' SIGTERM grace, with one grace more for itself."""
        return self.drain_budget_s + 2 * self.sigterm_grace_s


@dataclass(frozen=True)
class HubSettings:
    """The Hugging Face endpoint and the token sent to it."""

    endpoint: str = DEFAULT_HF_ENDPOINT
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HubSettings:
        """`RBEE_HF_ENDPOINT`, else `HF_ENDPOINT` (checked), and `HF_TOKEN` from `environ` (default:
        this process's); the hive reads the token file itself when `HF_TOKEN` is not set."""
        environ = os.environ if environ is None else environ
        endpoint = (environ.get(HF_ENDPOINT_ENV) or environ.get(HF_STANDARD_ENDPOINT_ENV)
                    or DEFAULT_HF_ENDPOINT).rstrip("/")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise TunableError(f"{HF_ENDPOINT_ENV} must be an http(s) URL such as {DEFAULT_HF_ENDPOINT}")
        return cls(endpoint, environ.get(HF_TOKEN_ENV) or None)

    def headers(self) -> dict[str, str]:
        """The Authorization header for the hub ({} without a token)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass(frozen=True)
class DownloadSettings:
    """Retries and timeouts of the hive's model downloads, and the hub they use."""

    PREFIX: ClassVar[str] = "download_"

    retries: int = tunable(5, "retries", ge=0)
    """Retries of a model download after failures in a row that brought no new bytes (an attempt
    that made progress starts the count again); also the retries after a checksum mismatch."""
    backoff_initial_s: float = tunable(1.0, "s")
    """Delay before the first download retry; doubles per failure in a row (±20 % jitter)."""
    backoff_max_s: float = tunable(30.0, "s")
    """Upper bound of the download retry delay."""
    stall_timeout_s: float = tunable(30.0, "s")
    """A download that receives no byte for this long is cut and retried (resuming with Range)."""
    connect_timeout_s: float = tunable(15.0, "s")
    """How long connecting to a model server (TCP and TLS) may take."""
    hub: HubSettings = field(default_factory=HubSettings)

    def delay(self, failures: int) -> float:
        """Seconds before the next attempt after `failures` (≥1) failures in a row."""
        base = min(self.backoff_initial_s * 2 ** (failures - 1), self.backoff_max_s)
        return base * random.uniform(1 - DOWNLOAD_JITTER, 1 + DOWNLOAD_JITTER)


@dataclass(frozen=True)
class SshTimings:
    """The queen's SSH limits (`ssh_*`)."""

    PREFIX: ClassVar[str] = "ssh_"

    connect_timeout_s: int = tunable(5, "s")
    """TCP connect, SSH banner and authentication, each (whole seconds: Fabric truncates)."""
    retries: int = tunable(2, "retries", ge=0)
    """Further connection attempts after an unreachable host, a timeout or a failed handshake."""
    backoff_initial_s: float = tunable(0.5, "s")
    """Delay before the first retry; doubles per retry."""
    backoff_max_s: float = tunable(4.0, "s")
    """Upper bound of the retry delay."""
    command_timeout_s: int = tunable(30, "s")
    """How long one command on the node may take; also the channel timeout."""


@dataclass(frozen=True)
class GpuLimits:
    """How the hive shares its GPUs between workers and the queen adds replicas (`gpu_*`)."""

    PREFIX: ClassVar[str] = "gpu_"

    reserve_mib: int = tunable(512, "MiB", ge=0)
    """Memory kept free on every GPU (for the driver, CUDA graphs and other programs)."""
    vram_budget_mib: int = tunable(0, "MiB", ge=0)
    """The most memory rbee's workers may book on one GPU; 0: the whole GPU."""
    max_temperature_c: int = tunable(90, "°C")
    """A GPU at or above this temperature takes no new worker."""
    max_replicas: int = tunable(1, "workers")
    """The most workers the queen runs for one model; it adds one while the model's queue waits."""
    replica_after_wait_s: float = tunable(2.0, "s")
    """How long a model's oldest queued request waits before the queen adds a replica."""


@dataclass(frozen=True)
class HttpLimits:
    """How long and how much each daemon's HTTP listener lets a client take (`http_*`); read when
    the daemon starts. They bound reading a request and idle time, never a response being sent."""

    PREFIX: ClassVar[str] = "http_"

    header_timeout_s: float = tunable(10.0, "s")
    """From a connection's accept (or the first byte of a later request on it) to the end of the
    request line and headers; a client slower than that has its connection closed."""
    body_timeout_s: float = tunable(30.0, "s")
    """From the end of a request's headers to the end of its body; slower: 408 and the connection closed."""
    keepalive_timeout_s: float = tunable(75.0, "s")
    """How long a connection may sit idle between requests (longer than the 15 s aiohttp's and
    httpx's clients keep an idle pooled connection, so they close it first)."""
    max_connections_per_address: int = tunable(4096, "connections")
    """Open connections one client address may hold; more are answered 503 and closed. The queen
    holds one connection to a worker per relayed stream and the load tests 1500 from one address."""
    json_max_depth: int = tunable(64, "levels")
    """Nesting of arrays and objects a JSON request body may have; deeper: 400 `JSON_TOO_DEEP`."""
    refusal_log_window_s: float = tunable(60.0, "s")
    """A refused or timed-out connection is logged once per client address in this window."""


SHARED = (Timings, DownloadSettings, GpuLimits, HttpLimits)
"""The groups every daemon has (the queen has `SshTimings` too); children inherit their variables."""
SHARED_VARIABLES = frozenset(t.variable for group in SHARED for t in tunables(group))


def load_timings(environ: Mapping[str, str] | None = None) -> Timings:
    """`Timings` with the `RBEE_*` overrides applied and checked."""
    return load(Timings, environ)


@cache
def http_limits() -> HttpLimits:
    """`HttpLimits` with this process's `RBEE_HTTP_*` overrides, read once (at the first request)."""
    return load(HttpLimits)


def load_ssh_timings(environ: Mapping[str, str] | None = None) -> SshTimings:
    """`SshTimings` with the `RBEE_SSH_*` overrides applied and checked."""
    return load(SshTimings, environ)


def shared_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of the shared tunables that `environ` (default: this process's) sets, each
    checked: what a daemon started elsewhere (over SSH, by systemd) needs to run as this one would."""
    environ = os.environ if environ is None else environ
    for group in SHARED:
        load(group, environ)
    return {name: environ[name] for name in sorted(SHARED_VARIABLES) if name in environ}
