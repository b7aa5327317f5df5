"""Helpers shared by the step modules (not steps themselves)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rbee.testing.cluster import Daemon, http_json, wait_until
from rbee.testing.http_client import EventStream

LONG_TASK_TOKENS = 6000
TINY_SEED = 7
"""Sampling seed for CLI runs on the tiny model (deterministic for a seed): its random weights
may otherwise pick only whitespace tokens now and then."""
FAST_TIMINGS = {
    "RBEE_HEARTBEAT_INTERVAL_S": "0.5",
    "RBEE_RESTART_BACKOFF_INITIAL_S": "0.2",
    "RBEE_RESTART_BACKOFF_MAX_S": "2",
    "RBEE_SIGTERM_GRACE_S": "3",
    "RBEE_DRAIN_BUDGET_S": "5",
    "RBEE_STALL_TIMEOUT_S": "3",
    "RBEE_WORKER_THREADS": "1",
}
"""Shorter lifecycle timings for every daemon a scenario starts (scenarios may override)."""


def started(context, daemon: Daemon, timeout: float = 60.0) -> Daemon:
    """Start a daemon, register it for teardown, wait until it is healthy."""
    context.daemons.append(daemon)
    daemon.start(env=context.env)
    daemon.wait_healthy(timeout)
    return daemon


def tiny_ref(context) -> str:
    """The file:// reference of the tiny test model."""
    return f"file://{context.tiny_model}"


def open_stream(context, url: str, body: dict | None, method: str = "POST") -> EventStream:
    """Open an SSE request and register it for teardown."""
    stream = EventStream(url, body, method).open()
    context.streams.append(stream)
    return stream


def first_token(stream: EventStream, timeout: float = 60.0) -> dict:
    """Read events until the first token arrives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = stream.next_event()
        assert event is not None, f"stream ended before a token: {stream.events}"
        if event.get("type") == "token":
            return event
    raise AssertionError("no token arrived")


def queen_workers_list(context) -> dict:
    """The queen's `/v2/workers/list` answer: its workers, hives and admission queue."""
    status, body = http_json(f"{context.queen_url}/v2/workers/list")
    assert status == 200, status
    return body


def hive_workers(context) -> list[dict]:
    """The workers the scenario's hive lists."""
    status, body = http_json(f"{context.hive_url}/v1/workers/list")
    assert status == 200, status
    return body["workers"]


def start_generation(context, worker_url: str) -> EventStream:
    """Begin a 50-token generation directly on a worker, without reading it."""
    body = {"prompt": "Once", "max_tokens": 50, "ignore_eos": True}
    stream = EventStream(f"{worker_url}/v1/inference", body, timeout=30).open()
    context.streams.append(stream)
    assert stream.status == 200
    return stream


def slots_free_within(url: str, expected: int, timeout: float) -> dict:
    """Poll a worker's /health until `slots_free` equals `expected`; return the last body."""
    last: dict = {}

    def check() -> bool:
        nonlocal last
        _, last = http_json(f"{url}/health")
        return last.get("slots_free") == expected

    assert wait_until(check, timeout, 0.02), f"slots did not free in {timeout}s: {last}"
    return last


def process_environment(pid: int) -> dict[str, str]:
    """The environment a running process was started with (/proc/PID/environ)."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode(errors="replace").split("=", 1) for entry in entries if b"=" in entry)


def address_space_soft_limit(pid: int) -> str:
    """A running process's soft RLIMIT_AS as /proc/PID/limits gives it: bytes, or `unlimited`."""
    limits = Path(f"/proc/{pid}/limits").read_text()
    return next(line for line in limits.splitlines() if line.startswith("Max address space")).split()[3]


def matches_schema(schema: dict[str, Any], value: Any) -> bool:
    """Whether `value` is valid against the JSON schema (jsonschema-rs, imported on use: the @gpu
    runs on a lent machine load every step module without that test-only package)."""
    import jsonschema_rs

    return jsonschema_rs.validator_for(schema).is_valid(value)
