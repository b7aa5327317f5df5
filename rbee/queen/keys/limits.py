"""Per-key limits: requests per minute, tokens per minute and requests at once.

Requests and tokens are counted over a sliding 60-second window; a key over one of its limits
gets 429 `RATE_LIMITED` with `Retry-After` (when the window frees enough) and the limit that
was hit. Tokens (prompt and completion) are charged when a request ends, so the request that
crosses the token limit finishes and the next ones wait.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rbee.common.errors import ApiError
from rbee.queen.keys.store import ApiKey

WINDOW_S = 60.0


@dataclass
class _Window:
    requests: collections.deque[float] = field(default_factory=collections.deque)
    tokens: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    token_sum: int = 0
    in_flight: int = 0


def limit_hit(key: ApiKey, limit: str, maximum: int, retry_after_s: float) -> ApiError:
    """The 429 answer naming the limit of `key` that was hit."""
    return ApiError(429, "RATE_LIMITED",
                    f"key '{key.name}' is over its limit of {maximum} {limit}; retry later",
                    {"key": key.name, "limit": limit, "max": maximum},
                    headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})


class KeyLimiter:
    """The windows of every key that has limits; used only on the queen's event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def _window(self, name: str) -> _Window:
        window = self._windows.get(name)
        if window is None:
            window = self._windows[name] = _Window()
        horizon = self._clock() - WINDOW_S
        while window.requests and window.requests[0] <= horizon:
            window.requests.popleft()
        while window.tokens and window.tokens[0][0] <= horizon:
            window.token_sum -= window.tokens.popleft()[1]
        return window

    def admit(self, key: ApiKey) -> None:
        """Count one request of `key` starting, or raise RATE_LIMITED naming the limit it hit."""
        limits = key.limits
        if limits.rpm is None and limits.tokens_per_min is None and limits.concurrency is None:
            return
        window, now = self._window(key.name), self._clock()
        if limits.concurrency is not None and window.in_flight >= limits.concurrency:
            raise limit_hit(key, "requests at once", limits.concurrency, 1)
        if limits.rpm is not None and len(window.requests) >= limits.rpm:
            raise limit_hit(key, "requests per minute", limits.rpm,
                            window.requests[len(window.requests) - limits.rpm] + WINDOW_S - now)
        if limits.tokens_per_min is not None and window.token_sum >= limits.tokens_per_min:
            raise limit_hit(key, "tokens per minute", limits.tokens_per_min,
                            self._token_wait(window, limits.tokens_per_min, now))
        window.requests.append(now)
        window.in_flight += 1

    @staticmethod
    def _token_wait(window: _Window, maximum: int, now: float) -> float:
        """Seconds until enough charged tokens leave the window to be under `maximum` again."""
        over = window.token_sum - maximum + 1
        for stamp, tokens in window.tokens:
            over -= tokens
            if over <= 0:
                return stamp + WINDOW_S - now
        return WINDOW_S

    def finished(self, key: ApiKey) -> None:
        """One request of `key` that `admit` counted has ended."""
        window = self._windows.get(key.name)
        if window is not None:
            window.in_flight = max(0, window.in_flight - 1)

    def charge(self, name: str, tokens: int) -> None:
        """Count `tokens` (prompt + completion) against key `name`'s tokens per minute."""
        window = self._windows.get(name)
        if window is not None and tokens > 0:
            window.tokens.append((self._clock(), tokens))
            window.token_sum += tokens
