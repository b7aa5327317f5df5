"""What the supervisor tells a worker's owner task (its inbox), and what a launch gives it back.

None of these leave the hive's process, so they live here rather than in `rbee.common.wire`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rbee.common.wire import WorkerState


@dataclass(frozen=True)
class Ready:
    """The worker called back: its model is loaded."""


@dataclass(frozen=True)
class Heartbeat:
    """The worker's periodic report."""

    state: WorkerState
    slots_free: int
    decode_stalled: bool = False
    tokens_generated: int = 0
    """Tokens the worker generated since it started: a change means it served in between."""


@dataclass(frozen=True)
class Stop:
    """Drain the worker and stop it for good."""

    reason: str


@dataclass(frozen=True)
class Reload:
    """Pass a SIGHUP on to the worker (it re-reads its tokens)."""


OwnerMessage = Ready | Heartbeat | Stop | Reload


@dataclass(frozen=True)
class Spawned:
    """A worker process just started, and the port it was told to serve on."""

    process: asyncio.subprocess.Process
    port: int

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid
