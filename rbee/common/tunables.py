"""Every tunable rbee uses (timings, limits, audit), with its unit and default, in one place.

Each can be overridden with an environment variable `RBEE_<NAME>` (for example
`RBEE_HEARTBEAT_INTERVAL_S=0.5`); child processes inherit them, so one setting on the queen
reaches its hive and workers. An invalid value stops the daemon with a message naming it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields


class TunableError(ValueError):
    """An environment override that is not a valid value."""


@dataclass(frozen=True)
class Timings:
    """Lifecycle timings (seconds unless the name says otherwise)."""

    heartbeat_interval_s: float = 2.0
    """How often workers report to their hive and hives to the queen."""
    stale_after_missed: int = 3
    """Heartbeats missed in a row before a worker or node counts as stale."""
    stall_timeout_s: float = 10.0
    """A busy worker that produced no token for this long has a stalled decode loop."""
    loading_timeout_s: float = 300.0
    """A worker still loading after this long is killed as hung."""
    idle_unload_s: float = 600.0
    """A worker idle for this long is stopped to free memory."""
    restart_backoff_initial_s: float = 1.0
    """Delay before the first restart of a crashed worker; doubles per attempt."""
    restart_backoff_max_s: float = 60.0
    """Upper bound of the restart delay."""
    restart_jitter: float = 0.2
    """Relative random spread applied to each restart delay (0.2 = ±20 %)."""
    max_restarts: int = 5
    """Restarts per model within the window before its circuit breaker opens."""
    restart_window_s: float = 300.0
    """Window of the circuit breaker."""
    drain_budget_s: float = 30.0
    """How long in-flight work may finish after a stop was asked for."""
    sigterm_grace_s: float = 10.0
    """How long a child may take to exit after SIGTERM before SIGKILL."""
    admission_queue_depth: int = 1024
    """Requests that may wait at the queen for a slot of one model; more are refused with 429."""
    admission_wait_max_s: float = 120.0
    """The longest a request waits in the admission queue before 503 (its deadline may end it sooner)."""
    failed_node_cooldown_s: float = 30.0
    """A node whose hive could not be started is passed over this long by requests naming no node."""
    request_deadline_s: float = 300.0
    """Deadline the queen gives a request that arrives without `X-Request-Deadline`."""
    worker_threads: int = 0
    """llama.cpp threads per worker context when `--threads` is not given; 0 = every core.
    (Measured on 2 cores with Gemma 3 270M: all cores give 31 tokens/s to one stream and the
    same 35 tokens/s aggregate to two streams as one thread per slot, which gives 19 to one.)"""
    rate_limit_per_s: float = 50.0
    """Requests per second each client (token) may make at the queen, sustained; 0 = unlimited."""
    rate_limit_burst: int = 100
    """Requests a client may make at once above its sustained rate (token-bucket size)."""
    max_concurrent_per_client: int = 256
    """Requests one client may have in flight at the queen at once; 0 = unlimited."""
    failure_limit: int = 30
    """Auth or validation failures one address may cause within `failure_window_s` before its
    requests are refused with 429 for the rest of the window; 0 = never."""
    failure_window_s: float = 60.0
    """Window over which failures are counted."""
    audit_max_bytes: int = 10_000_000
    """Size (bytes) at which an audit log segment is closed and a new one begun."""
    audit_fsync: int = 1
    """1: each audit record is fsync'ed before the request goes on; 0: left to the OS."""
    download_retries: int = 5
    """Retries of a model download after failures in a row that brought no new bytes (an attempt
    that made progress starts the count again); also the retries after a checksum mismatch."""
    download_backoff_initial_s: float = 1.0
    """Delay before the first download retry; doubles per failure in a row (±20 % jitter)."""
    download_backoff_max_s: float = 30.0
    """Upper bound of the download retry delay."""
    download_stall_timeout_s: float = 30.0
    """A download that receives no byte for this long is cut and retried (resuming with Range)."""
    download_connect_timeout_s: float = 15.0
    """How long connecting to a model server (TCP and TLS) may take."""

    @property
    def stale_after_s(self) -> float:
        """Silence after which a heartbeat source is stale."""
        return self.heartbeat_interval_s * self.stale_after_missed


ZERO_ALLOWED = frozenset({
    "restart_jitter", "max_restarts", "rate_limit_per_s", "max_concurrent_per_client", "failure_limit",
    "audit_fsync", "worker_threads", "download_retries", "admission_queue_depth",
})


def env_name(field_name: str) -> str:
    """The environment variable that overrides a timing."""
    return f"RBEE_{field_name.upper()}"


def env_overrides(
    schema: type,
    environ: Mapping[str, str],
    name_of: Callable[[str], str],
    lowest: Callable[[str, type], float],
) -> dict[str, float | int]:
    """The fields of dataclass `schema` that `environ` overrides, parsed and checked against their
    lowest allowed value (TunableError naming the variable when one is not valid)."""
    values: dict[str, float | int] = {}
    for item in fields(schema):
        name = name_of(item.name)
        if name not in environ:
            continue
        kind = int if item.type in ("int", int) else float
        try:
            value = kind(environ[name])
        except ValueError as exc:
            raise TunableError(f"{name} must be a {kind.__name__}") from exc
        if value < lowest(item.name, kind):
            raise TunableError(f"{name} is out of range")
        values[item.name] = value
    return values


def load_timings(environ: Mapping[str, str] | None = None) -> Timings:
    """Defaults with `RBEE_*` overrides applied and checked."""
    environ = os.environ if environ is None else environ
    values = env_overrides(Timings, environ, env_name, lambda name, _: 0 if name in ZERO_ALLOWED else 1e-3)
    if values.get("restart_jitter", 0) >= 1:
        raise TunableError(f"{env_name('restart_jitter')} is out of range")
    return Timings(**values)
