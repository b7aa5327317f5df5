"""The queen's admission queue: requests wait here for a slot of their model's workers.

Bounded per model (`admission_queue_depth`; a full queue is 429 `QUEUE_FULL`), and a request
waits at most `admission_wait_max_s` (503 `QUEUE_TIMEOUT`) or until its deadline. Waiters are
woken one at a time, oldest first, whenever a slot of their model is released or a worker of
it starts serving; they also look again every `RECHECK_S` in case a heartbeat brought a slot.
Each waiter has a position in its model's line (1: the next to be served, by arrival) and an
estimated wait from the model's recent service rate (`waiting.ServiceRate`).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from rbee.common.errors import ApiError
from rbee.common.tunables import Timings
from rbee.queen.routing.waiting import ServiceRate

RECHECK_S = 0.5


class AdmissionQueue:
    """Per-model waiting rooms; used only on the queen's event loop."""

    def __init__(self, timings: Timings) -> None:
        self._timings = timings
        self._lines: dict[str, collections.deque[asyncio.Future[None]]] = {}
        self._waiting: dict[str, int] = {}
        self._tickets: dict[str, dict[object, int]] = {}
        """Per model, each waiter holding a place and its arrival number."""
        self._line_up: dict[str, list[int]] = {}
        """Per model, the arrival numbers of the waiters holding a place, in order."""
        self._arrived = itertools.count()
        self._rates: collections.defaultdict[str, ServiceRate] = collections.defaultdict(ServiceRate)

    def depth(self, model: str | None = None) -> int:
        """Requests waiting now (for one model, or in all)."""
        return self._waiting.get(model, 0) if model else sum(self._waiting.values())

    def by_model(self) -> dict[str, int]:
        """Requests waiting now, per model."""
        return dict(self._waiting)

    def position(self, model: str, waiter: object) -> int | None:
        """`waiter`'s place in `model`'s line (1: next), or None when it holds none."""
        ticket = self._tickets.get(model, {}).get(waiter)
        return None if ticket is None else bisect.bisect_left(self._line_up[model], ticket) + 1

    def eta_s(self, model: str, position: int) -> int | None:
        """Estimated seconds until the waiter at `position` is served (None: no rate measured yet)."""
        return self._rates[model].eta_s(position)

    @asynccontextmanager
    async def place(self, model: str, waiter: object | None = None) -> AsyncIterator[None]:
        """Hold a place in `model`'s queue for the block (as `waiter`, for `position`); 429 when
        the queue is full."""
        if self.depth(model) >= self._timings.admission_queue_depth:
            raise ApiError(429, "QUEUE_FULL", "too many requests are waiting for this model; retry shortly",
                           {"model": model, "waiting": self.depth(model)}, headers={"Retry-After": "1"})
        key = object() if waiter is None else waiter
        ticket = next(self._arrived)
        self._waiting[model] = self.depth(model) + 1
        self._tickets.setdefault(model, {})[key] = ticket
        self._line_up.setdefault(model, []).append(ticket)
        try:
            yield
        finally:
            left = self.depth(model) - 1
            line_up = self._line_up[model]
            del line_up[bisect.bisect_left(line_up, ticket)]
            del self._tickets[model][key]
            if left:
                self._waiting[model] = left
            else:
                self._waiting.pop(model, None)
                self._tickets.pop(model, None)
                self._line_up.pop(model, None)

    async def wait_turn(self, model: str, waited_s: float) -> None:
        """Sleep until a slot of `model` may be free (or `RECHECK_S`); 503 past the longest wait."""
        remaining = self._timings.admission_wait_max_s - waited_s
        if remaining <= 0:
            raise ApiError(503, "QUEUE_TIMEOUT", "no slot of this model came free in time; retry later",
                           {"model": model, "waited_s": round(waited_s, 1)}, headers={"Retry-After": "5"})
        turn = asyncio.get_running_loop().create_future()
        line = self._lines.setdefault(model, collections.deque())
        line.append(turn)
        try:
            await asyncio.wait_for(turn, min(RECHECK_S, remaining))
        except TimeoutError:
            return
        finally:
            if turn in line:
                line.remove(turn)

    def finished(self, model: str) -> None:
        """A request of `model` released its slot: count it for the service rate, wake a waiter."""
        self._rates[model].released()
        self.slot_freed(model)

    def slot_freed(self, model: str, count: int = 1) -> None:
        """Wake the `count` oldest waiters of `model`."""
        line = self._lines.get(model)
        while line and count > 0:
            turn = line.popleft()
            if not turn.done():
                turn.set_result(None)
                count -= 1
