"""Child processes: start them tied to their parent, stop them by PID with a SIGKILL fallback."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import resource
import signal
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec hook: the kernel sends SIGTERM to the child if its parent dies (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        return


def _child_setup(address_space_limit: int | None) -> Callable[[], None]:
    def setup() -> None:
        die_with_parent()
        if address_space_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space_limit, address_space_limit))

    return setup


SERVICE_MANAGER_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")
"""Set by systemd for the daemon itself: a child must not notify or pet the watchdog as the unit."""


def child_environment() -> dict[str, str]:
    """This process's environment without the service manager's per-unit variables."""
    return {k: v for k, v in os.environ.items() if k not in SERVICE_MANAGER_VARIABLES}


async def spawn(
    args: list[str], log_path: Path, address_space_limit: int | None = None,
    env: Mapping[str, str] | None = None,
) -> asyncio.subprocess.Process:
    """Start `args` with stdout and stderr appended to `log_path`, tied to this process, under an
    address-space limit (bytes) when one is given, with `env` added to the child environment."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_child_setup(address_space_limit),
            env={**child_environment(), **(env or {})},
        )


async def terminate(
    process: asyncio.subprocess.Process, grace_s: float, what: str, on_kill: Callable[[], None] | None = None
) -> int:
    """SIGTERM, wait up to `grace_s`, then SIGKILL (calling `on_kill` first); returns the exit code."""
    if process.returncode is not None:
        return process.returncode
    try:
        process.terminate()
        return await asyncio.wait_for(process.wait(), grace_s)
    except ProcessLookupError:
        return await process.wait()
    except TimeoutError:
        log.warning("%s (pid %d) ignored SIGTERM for %.1fs: SIGKILL", what, process.pid, grace_s)
        if on_kill is not None:
            on_kill()
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        return await process.wait()
