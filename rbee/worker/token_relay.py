"""Tokens from the engine's thread to the event loop, one loop wake-up for many tokens.

`loop.call_soon_threadsafe` per token writes to the loop's self-pipe and wakes it once per token:
64 streams cost 64 syscalls and 64 wake-ups per decode step, under the GIL the decode thread
needs. The relay queues each delivery and schedules one drain while none is pending, so the
tokens of a step reach the loop together, and a lone stream's token still goes at once. Calls
from one thread keep their order, also against that thread's later `call_soon_threadsafe`
(a finished generation's future), since a delivery is queued before any drain it needs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any


class TokenRelay:
    """Runs `deliver(*args)` calls made on other threads on the event loop, in order, batched."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._scheduled = False
        self.wakeups = 0
        """How many drains ran (for tests and benchmarks)."""

    def call(self, deliver: Callable[..., None], *args: Any) -> None:
        """Queue `deliver(*args)` for the loop; wake it only when no drain is pending."""
        with self._lock:
            self._pending.append((deliver, args))
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        self.wakeups += 1
        for deliver, args in batch:
            deliver(*args)
