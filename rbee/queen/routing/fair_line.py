"""Deficit round-robin (DRR) over the tenants waiting in one model's admission queue.

Each tenant (API key) with waiters is on a ring, in the order it arrived. A visit to a tenant
adds its quantum to its deficit — its weight over the smallest weight on the ring, so every
tenant gets at least one request per round and a weight-3 key three to a weight-1 key's one —
and serves its waiters, oldest first, one per whole unit of deficit; then the next tenant is
visited. A tenant whose waiters are all gone leaves the ring and loses its deficit (no credit is
saved up while it is away); coming back it joins the ring last. A waiter served out of turn (the
one DRR chose could not use the freed slot) is charged to its tenant's deficit all the same.

`order()` is the order DRR would serve the current waiters in if no one else arrived; a waiter's
position is its place in that order. With one tenant the order is arrival order (FIFO).
"""

from __future__ import annotations

import collections
import itertools
import math
import time
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from rbee.queen.routing.tenant import Tenant

Seat = TypeVar("Seat", bound=Hashable)
WHOLE = 1.0 - 1e-9
"""A deficit this close to 1 pays for a request (weights that are not binary fractions)."""
POSITION_REFRESH_S = 0.2
"""Positions are worked out again at most this often (the whole order costs a pass over the
waiters; the notes that tell positions go out once a second)."""


@dataclass
class _Rounds:
    """DRR's state: the ring (its first tenant is being visited), each tenant's deficit, weight
    and waiters left."""

    ring: collections.deque[str] = field(default_factory=collections.deque)
    visiting: bool = False
    """Whether the first tenant on the ring got its quantum for this visit already."""
    deficit: dict[str, float] = field(default_factory=dict)
    weight: dict[str, float] = field(default_factory=dict)
    left: dict[str, int] = field(default_factory=dict)
    unit: float | None = None
    """The smallest weight on the ring (None: to be found again)."""

    def copy(self) -> _Rounds:
        return _Rounds(collections.deque(self.ring), self.visiting, dict(self.deficit), dict(self.weight),
                       dict(self.left), self.unit)

    def join(self, tenant: Tenant) -> None:
        """One more waiter of `tenant` (a tenant new to the ring joins it last)."""
        if tenant.name not in self.left:
            self.ring.append(tenant.name)
            self.deficit[tenant.name] = 0.0
            self.left[tenant.name] = 0
        self.weight[tenant.name] = tenant.weight
        self.unit = None
        self.left[tenant.name] += 1

    def leave(self, name: str, charge: float, count: int = 1) -> None:
        """`count` waiters of `name` are gone (served: `charge` 1 each; gave up: 0)."""
        self.deficit[name] -= charge * count
        self.left[name] -= count
        if not self.left[name]:
            if self.ring[0] == name:
                self.visiting = False
            self.ring.remove(name)
            del self.deficit[name], self.weight[name], self.left[name]
            self.unit = None

    def _visit(self) -> str:
        """The tenant being visited, its quantum added once per visit."""
        name = self.ring[0]
        if not self.visiting:
            if self.unit is None:
                self.unit = min(self.weight[t] for t in self.ring)
            self.deficit[name] += self.weight[name] / self.unit
            self.visiting = True
        return name

    def _next_visit(self) -> None:
        self.ring.rotate(-1)
        self.visiting = False

    def next_tenant(self) -> str:
        """The tenant DRR serves next, charged for it (there must be a waiter)."""
        while True:
            name = self._visit()
            if self.deficit[name] >= WHOLE:
                self.leave(name, 1.0)
                return name
            self._next_visit()

    def runs(self) -> Iterator[tuple[str, int]]:
        """(tenant, waiters) runs in the order DRR serves every waiter (using this state up): what
        `next_tenant` gives one call at a time, a visit's worth at once."""
        while self.ring:
            if len(self.ring) == 1:
                yield self.ring[0], self.left[self.ring[0]]
                return
            name = self._visit()
            count = min(self.left[name], max(0, math.floor(self.deficit[name] + 1.0 - WHOLE)))
            if count:
                self.leave(name, 1.0, count)
                yield name, count
            if name in self.left:
                self._next_visit()


class FairLine(Generic[Seat]):
    """The waiters of one model, each of a tenant, in DRR order."""

    def __init__(self, refresh_s: float = POSITION_REFRESH_S) -> None:
        self._queues: dict[str, collections.deque[Seat]] = {}
        self._rounds = _Rounds()
        self._refresh_s = refresh_s
        self._places: dict[Seat, int] = {}
        self._places_at = -math.inf
        self._changed = False
        self.version = 0
        """Counts the changes to the line (an order read before one may be out of date)."""

    def __len__(self) -> int:
        return sum(self._rounds.left.values())

    def waiting(self, name: str) -> int:
        """Waiters of the tenant called `name`."""
        return self._rounds.left.get(name, 0)

    def add(self, seat: Seat, tenant: Tenant) -> None:
        """`seat` waits for `tenant`, behind the tenant's earlier waiters."""
        self._queues.setdefault(tenant.name, collections.deque()).append(seat)
        self._rounds.join(tenant)
        self._changed = True
        self.version += 1

    def remove(self, seat: Seat, name: str) -> None:
        """`seat` (of the tenant `name`) gave up without being served."""
        self._drop(seat, name)
        self._rounds.leave(name, 0.0)

    def serve(self, seat: Seat, name: str) -> None:
        """`seat` (of the tenant `name`) got its slot: DRR's turn when it is first in `order()`,
        else out of turn, charged to its tenant all the same."""
        if next(self.order(), None) == seat:
            self._rounds.next_tenant()
        else:
            self._rounds.leave(name, 1.0)
        self._drop(seat, name)

    def _drop(self, seat: Seat, name: str) -> None:
        queue = self._queues[name]
        queue.remove(seat)
        if not queue:
            del self._queues[name]
        self._places.pop(seat, None)
        self._changed = True
        self.version += 1

    def heads(self) -> list[Seat]:
        """Each tenant's oldest waiter."""
        return [queue[0] for queue in self._queues.values()]

    def order(self) -> Iterator[Seat]:
        """Every waiter, in the order DRR would serve them if no one else arrived (worked out as
        far as it is read)."""
        cursors = {name: iter(list(queue)) for name, queue in self._queues.items()}
        for name, count in self._rounds.copy().runs():
            yield from itertools.islice(cursors[name], count)

    def position(self, seat: Seat) -> int | None:
        """`seat`'s place in `order()` (1: served next; at most `refresh_s` old), None when it does
        not wait here."""
        now = time.monotonic()
        if seat not in self._places or (self._changed and now - self._places_at >= self._refresh_s):
            self._places = {waiter: place for place, waiter in enumerate(self.order(), 1)}
            self._places_at, self._changed = now, False
        return self._places.get(seat)
