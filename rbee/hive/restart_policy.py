"""When to restart a crashed worker: exponential backoff with jitter and a per-model breaker."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable

from rbee.common.tunables import Timings


class RestartPolicy:
    """Decides whether and after how long a crashed worker of a model may start again."""

    def __init__(
        self,
        timings: Timings,
        uniform: Callable[[float, float], float] = random.uniform,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timings = timings
        self._uniform = uniform
        self._clock = clock
        self._restarts: dict[str, deque[float]] = {}

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number `attempt` (0-based), jitter included."""
        t = self._timings
        base = min(t.restart_backoff_initial_s * 2**attempt, t.restart_backoff_max_s)
        return base * self._uniform(1 - t.restart_jitter, 1 + t.restart_jitter)

    def _recent(self, model: str) -> deque[float]:
        window_start = self._clock() - self._timings.restart_window_s
        recent = self._restarts.setdefault(model, deque())
        while recent and recent[0] < window_start:
            recent.popleft()
        return recent

    def breaker_open(self, model: str) -> bool:
        """True while the model used up its restarts within the window."""
        recent = self._recent(model)
        return bool(recent) and len(recent) >= self._timings.max_restarts

    def try_restart(self, model: str) -> bool:
        """Record a restart of `model` unless its restarts are used up; True when allowed."""
        if len(self._recent(model)) >= self._timings.max_restarts:
            return False
        self._recent(model).append(self._clock())
        return True
