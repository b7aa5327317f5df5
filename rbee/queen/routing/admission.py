"""The queen's admission queue: requests wait here for a slot of their model's workers.

Bounded per model (`admission_queue_depth`; a full queue is 429 `QUEUE_FULL`), and per API key
(`admission_key_share` of that depth), and a request waits at most `admission_wait_max_s`
(503 `QUEUE_TIMEOUT`) or until its deadline.

Who gets a slot is decided by deficit round-robin across the keys waiting (`fair_line.py`): a
waiter may look for a slot only when the queue gives it a turn, and turns go out one at a time
in DRR order. A released slot, or the slots of a worker that starts serving, start a pass: the
first waiter in DRR order looks; one that cannot use the slot (it names another node or backend)
passes the turn to the next, until the slots are taken, a waiter that may use any slot found
none, or every waiter has looked. Every `RECHECK_S` a pass also runs for slots the queue was not
told of (a heartbeat brought a worker). A look that overlapped a slot freed meanwhile may take it only
when its waiter is first in DRR order (`take`). So a key that floods the queue gets its share of
the slots, never more, whichever of its waiters is awake. (`Placement` sends a request that
arrives while others wait for its model to the queue without looking for a slot itself.)

Each waiter has a position in its model's line (1: next, in DRR order: `FairLine.order`) and an
estimated wait from the model's recent service rate (`waiting.ServiceRate`).
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from rbee.common.errors import ApiError
from rbee.common.tunables import Timings
from rbee.queen.routing.fair_line import FairLine
from rbee.queen.routing.tenant import ANONYMOUS, Tenant
from rbee.queen.routing.waiting import ServiceRate

RECHECK_S = 0.5
"""Seconds between two passes looking for slots the queue was not told of."""


@dataclass(eq=False)
class Seat:
    """One request's place in its model's queue."""

    model: str
    tenant: Tenant
    turn: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    """Set when the queue gives this waiter its turn to look for a slot."""
    served: bool = False
    granted_in: int = -1
    """The pass in which it was given its turn."""
    since: float = field(default_factory=lambda: asyncio.get_running_loop().time())
    """When it took its place (event-loop time)."""


@dataclass(eq=False)
class _Model:
    """The waiters of one model and the pass handing out turns among them."""

    line: FairLine[Seat] = field(default_factory=FairLine)
    seats: dict[object, Seat] = field(default_factory=dict)
    """Each waiter's seat, by the name it was placed under."""
    looking: Seat | None = None
    """The waiter whose turn it is."""
    looked: set[Seat] = field(default_factory=set)
    """Waiters that had their turn in this pass and found no slot."""
    free: int = 0
    """Slots released that no waiter has taken yet in this pass."""
    rechecking: bool = False
    """Whether this pass goes on past slots taken (`RECHECK_S`: slots the queue was not told of)."""
    timer: asyncio.TimerHandle | None = None
    cursor: Iterator[Seat] | None = None
    """Where the pass is in DRR order (read on while the line is unchanged: `cursor_version`)."""
    cursor_version: int = -1
    passes: int = 0
    """Counts the passes begun (a look given its turn in an earlier one may have seen a slot
    freed for the first waiter of a later one)."""

    def new_pass(self) -> None:
        """Let every waiter look again, from the first in DRR order."""
        self.looked.clear()
        self.cursor = None
        self.passes += 1

    def next_turn(self) -> None:
        """Give the turn to the first waiter in DRR order that has not looked in this pass; end
        the pass when there is none, or no slot is left to hand out."""
        if self.looking is not None:
            return
        if self.free or self.rechecking:
            if self.cursor is None or self.cursor_version != self.line.version:
                self.cursor, self.cursor_version = self.line.order(), self.line.version
            for seat in self.cursor:
                if seat not in self.looked:
                    self.looking, seat.granted_in = seat, self.passes
                    seat.turn.set_result(None)
                    return
        self.free, self.rechecking = 0, False
        self.new_pass()


class AdmissionQueue:
    """Per-model waiting rooms; used only on the queen's event loop."""

    def __init__(self, timings: Timings) -> None:
        self._timings = timings
        self._models: dict[str, _Model] = {}
        self._rates: collections.defaultdict[str, ServiceRate] = collections.defaultdict(ServiceRate)

    def depth(self, model: str | None = None) -> int:
        """Requests waiting now (for one model, or in all)."""
        if model:
            waiting = self._models.get(model)
            return len(waiting.seats) if waiting else 0
        return sum(len(waiting.seats) for waiting in self._models.values())

    def by_model(self) -> dict[str, int]:
        """Requests waiting now, per model."""
        return {model: len(waiting.seats) for model, waiting in self._models.items()}

    def position(self, model: str, waiter: object) -> int | None:
        """`waiter`'s place in `model`'s line (1: next, in DRR order), or None when it holds none."""
        waiting = self._models.get(model)
        seat = waiting.seats.get(waiter) if waiting else None
        return None if seat is None or waiting is None else waiting.line.position(seat)

    def eta_s(self, model: str, position: int) -> int | None:
        """Estimated seconds until the waiter at `position` is served (None: no rate measured yet)."""
        return self._rates[model].eta_s(position)

    def _check_room(self, model: str, tenant: Tenant) -> None:
        """429 `QUEUE_FULL` when `model`'s queue, or the key's share of it, is full."""
        depth = self._timings.admission_queue_depth
        waiting = self._models.get(model)
        if self.depth(model) >= depth:
            raise ApiError(429, "QUEUE_FULL", "too many requests are waiting for this model; retry shortly",
                           {"model": model, "waiting": self.depth(model)}, headers={"Retry-After": "1"})
        share = max(1, math.floor(depth * self._timings.admission_key_share))
        held = waiting.line.waiting(tenant.name) if waiting else 0
        if held >= share:
            raise ApiError(429, "QUEUE_FULL", "this key has its share of the requests waiting for this "
                           "model; retry shortly",
                           {"model": model, "waiting": self.depth(model), "key": tenant.name,
                            "key_waiting": held, "key_share": share}, headers={"Retry-After": "1"})

    @asynccontextmanager
    async def place(
        self, model: str, waiter: object | None = None, tenant: Tenant = ANONYMOUS
    ) -> AsyncIterator[Seat]:
        """Hold a place in `model`'s queue for `tenant` for the block (as `waiter`, for
        `position`); 429 when the queue, or the key's share of it, is full."""
        self._check_room(model, tenant)
        key = object() if waiter is None else waiter
        waiting = self._models.get(model)
        if waiting is None:
            waiting = self._models[model] = _Model()
            self._arm(model, waiting)
        seat = Seat(model, tenant)
        waiting.seats[key] = seat
        waiting.line.add(seat, tenant)
        try:
            yield seat
        finally:
            del waiting.seats[key]
            if not seat.served:
                waiting.line.remove(seat, tenant.name)
            waiting.looked.discard(seat)
            if waiting.looking is seat:
                waiting.looking = None
            if waiting.seats:
                waiting.next_turn()
            else:
                if waiting.timer is not None:
                    waiting.timer.cancel()
                del self._models[model]

    def _arm(self, model: str, waiting: _Model) -> None:
        """Run a pass over the waiters of `model` in `RECHECK_S`, and again after it."""
        waiting.timer = asyncio.get_running_loop().call_later(RECHECK_S, self._recheck, model, waiting)

    def _recheck(self, model: str, waiting: _Model) -> None:
        self._arm(model, waiting)
        if not (waiting.free or waiting.rechecking or waiting.looking):
            waiting.new_pass()
        waiting.rechecking = True
        waiting.next_turn()

    async def wait_turn(self, seat: Seat, waited_s: float) -> None:
        """Sleep until `seat` has its turn to look for a slot; 503 once it waited the longest wait."""
        remaining = self._timings.admission_wait_max_s - waited_s
        if remaining > 0 and not seat.turn.done():
            await asyncio.wait({seat.turn}, timeout=remaining)
        if not seat.turn.done():
            raise ApiError(503, "QUEUE_TIMEOUT", "no slot of this model came free in time; retry later",
                           {"model": seat.model, "waited_s": round(waited_s + max(remaining, 0.0), 1)},
                           headers={"Retry-After": "5"})

    def take(self, seat: Seat) -> bool:
        """`seat`'s turn found a slot: True when it may take it (it is served, the turn goes on
        while slots are left). False when a slot came free while it looked and another waiter is
        first in DRR order: the slot is handed out as freed, `seat` waits for its turn again."""
        waiting = self._models[seat.model]
        waiting.looking = None
        seat.turn = asyncio.get_running_loop().create_future()
        if seat.granted_in != waiting.passes and next(waiting.line.order(), None) is not seat:
            waiting.free += 1
            waiting.new_pass()
            waiting.next_turn()
            return False
        waiting.line.serve(seat, seat.tenant.name)
        seat.served = True
        waiting.free = max(0, waiting.free - 1)
        waiting.next_turn()
        return True

    def passed(self, seat: Seat, *, saw_all: bool) -> None:
        """`seat`'s turn found no slot it may use: it waits for another turn, and the next waiter
        looks, unless `seat` may use every slot of the model (`saw_all`: no node or backend named),
        so no other waiter would find one either: then the pass ends."""
        waiting = self._models[seat.model]
        seat.turn = asyncio.get_running_loop().create_future()
        waiting.looked.add(seat)
        waiting.looking = None
        if saw_all:
            waiting.free, waiting.rechecking = 0, False
        waiting.next_turn()

    def longest_wait_s(self, model: str) -> float:
        """Seconds the longest waiting request of `model` has waited (0 when none waits)."""
        waiting = self._models.get(model)
        if not waiting:
            return 0.0
        return asyncio.get_running_loop().time() - min(seat.since for seat in waiting.line.heads())

    def finished(self, model: str) -> None:
        """A request of `model` released its slot: count it for the service rate, hand it out."""
        self._rates[model].released()
        self.slot_freed(model)

    def slot_freed(self, model: str, count: int = 1) -> None:
        """`count` slots of `model` came free: the waiters look for them in DRR order (a slot freed
        while no one waits is not kept)."""
        waiting = self._models.get(model)
        if waiting is None or count <= 0:
            return
        waiting.free += count
        waiting.new_pass()
        waiting.next_turn()
