"""Test-only fault injection for workers, so failure scenarios need no sleeps or guesswork.

Faults come from `RBEE_FAULTS` (comma-separated) and are refused unless
`RBEE_ALLOW_FAULTS=1` is set as well:

- `crash-on-load`: exit with code 3 while loading the model;
- `slow-load=MS`: take MS milliseconds longer to load;
- `slow-load-step=MS`: sleep MS milliseconds at each step of llama.cpp's loading progress (a slow
  disk: the load reports its progress over a while);
- `crash-before-token-once=PATH`: if PATH exists, delete it and exit with code 3 when the next
  generation starts, before its first token;
- `stall-after=N`: the decode loop hangs (ignoring cancellation) after N tokens;
- `slow=MS`: sleep MS milliseconds before each token;
- `no-heartbeat`: never send heartbeats;
- `handler-error`: the inference handler raises an unexpected exception (a bug, as the client
  and the log see it);
- `allocate=MB`: each inference request first allocates MB megabytes (a runaway worker);
- `ignore-sigterm`: once loaded, SIGTERM is ignored (a stubborn worker: only SIGKILL stops it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rbee.common.tunables import TunableError

ALLOW_ENV = "RBEE_ALLOW_FAULTS"
FAULTS_ENV = "RBEE_FAULTS"
FAULT_EXIT_CODE = 3
STALL_S = 3600.0


class FaultsRefused(TunableError):
    """Faults were asked for without being explicitly allowed, or are malformed."""


@dataclass(frozen=True)
class Faults:
    """The faults a worker was started with (none by default)."""

    crash_on_load: bool = False
    slow_load_ms: int = 0
    slow_load_step_ms: int = 0
    crash_before_token_flag: Path | None = None
    stall_after: int | None = None
    slow_ms: int = 0
    no_heartbeat: bool = False
    handler_error: bool = False
    allocate_mb: int = 0
    ignore_sigterm: bool = False

    def on_load(self) -> None:
        """Called in the engine's thread while loading the model."""
        if self.crash_on_load:
            os._exit(FAULT_EXIT_CODE)
        time.sleep(self.slow_load_ms / 1000)

    def on_ready(self) -> None:
        """Called on the event loop once the model is loaded (the daemon's signal handlers are set)."""
        if self.ignore_sigterm:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def on_load_step(self) -> None:
        """Called in the loading thread at each loading progress step."""
        time.sleep(self.slow_load_step_ms / 1000)

    def on_generation_start(self) -> None:
        """Called in the engine's thread before the first token of a generation."""
        flag = self.crash_before_token_flag
        if flag is not None and flag.exists():
            flag.unlink()
            os._exit(FAULT_EXIT_CODE)

    def on_request(self) -> None:
        """Called by the inference handler before it admits a request."""
        if self.handler_error:
            raise RuntimeError("injected handler fault")
        if self.allocate_mb:
            bytearray(self.allocate_mb * 1024 * 1024)

    def on_token(self, index: int) -> None:
        """Called in the engine's thread before each token is handed out."""
        if self.slow_ms:
            time.sleep(self.slow_ms / 1000)
        if self.stall_after is not None and index >= self.stall_after:
            threading.Event().wait(STALL_S)


def _parse_int(spec: str, value: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise FaultsRefused(f"fault {spec!r} needs a whole number") from exc


def load_faults(environ: Mapping[str, str]) -> Faults:
    """Parse `RBEE_FAULTS` of `environ`; refuse them unless `RBEE_ALLOW_FAULTS=1`."""
    specs = [s.strip() for s in environ.get(FAULTS_ENV, "").split(",") if s.strip()]
    if not specs:
        return Faults()
    if environ.get(ALLOW_ENV) != "1":
        raise FaultsRefused(f"{FAULTS_ENV} is set but fault injection is off; set {ALLOW_ENV}=1")
    options: dict[str, object] = {}
    for spec in specs:
        name, _, value = spec.partition("=")
        if name == "crash-on-load":
            options["crash_on_load"] = True
        elif name == "slow-load":
            options["slow_load_ms"] = _parse_int(spec, value)
        elif name == "slow-load-step":
            options["slow_load_step_ms"] = _parse_int(spec, value)
        elif name == "crash-before-token-once" and value:
            options["crash_before_token_flag"] = Path(value)
        elif name == "stall-after":
            options["stall_after"] = _parse_int(spec, value)
        elif name == "slow":
            options["slow_ms"] = _parse_int(spec, value)
        elif name == "no-heartbeat":
            options["no_heartbeat"] = True
        elif name == "handler-error":
            options["handler_error"] = True
        elif name == "ignore-sigterm":
            options["ignore_sigterm"] = True
        elif name == "allocate":
            options["allocate_mb"] = _parse_int(spec, value)
        else:
            raise FaultsRefused(f"unknown fault {name!r}")
    return Faults(**options)
