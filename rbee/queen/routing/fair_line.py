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
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from rbee.queen.routing.tenant import Tenant

Seat = TypeVar("Seat", bound=Hashable)
WHOLE = 1.0 - 1e-9
"""A deficit this close to 1 pays for a request (weights that are not binary fractions)."""


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

    def copy(self) -> _Rounds:
        return _Rounds(collections.deque(self.ring), self.visiting, dict(self.deficit), dict(self.weight),
                       dict(self.left))

    def join(self, tenant: Tenant) -> None:
        """One more waiter of `tenant` (a tenant new to the ring joins it last)."""
        if tenant.name not in self.left:
            self.ring.append(tenant.name)
            self.deficit[tenant.name] = 0.0
            self.left[tenant.name] = 0
        self.weight[tenant.name] = tenant.weight
        self.left[tenant.name] += 1

    def leave(self, name: str, charge: float) -> None:
        """One waiter of `name` is gone (served out of turn: `charge` 1; gave up: 0)."""
        self.deficit[name] -= charge
        self.left[name] -= 1
        if not self.left[name]:
            if self.ring[0] == name:
                self.visiting = False
            self.ring.remove(name)
            del self.deficit[name], self.weight[name], self.left[name]

    def next_tenant(self) -> str:
        """The tenant DRR serves next, charged for it (there must be a waiter)."""
        while True:
            name = self.ring[0]
            if not self.visiting:
                self.deficit[name] += self.weight[name] / min(self.weight[t] for t in self.ring)
                self.visiting = True
            if self.deficit[name] >= WHOLE:
                self.leave(name, 1.0)
                return name
            self.ring.rotate(-1)
            self.visiting = False


class FairLine(Generic[Seat]):
    """The waiters of one model, each of a tenant, in DRR order."""

    def __init__(self) -> None:
        self._queues: dict[str, collections.deque[Seat]] = {}
        self._rounds = _Rounds()
        self._order: list[Seat] | None = None
        self._places: dict[Seat, int] = {}

    def __len__(self) -> int:
        return sum(self._rounds.left.values())

    def waiting(self, name: str) -> int:
        """Waiters of the tenant called `name`."""
        return self._rounds.left.get(name, 0)

    def add(self, seat: Seat, tenant: Tenant) -> None:
        """`seat` waits for `tenant`, behind the tenant's earlier waiters."""
        self._queues.setdefault(tenant.name, collections.deque()).append(seat)
        self._rounds.join(tenant)
        self._order = None

    def remove(self, seat: Seat, name: str) -> None:
        """`seat` (of the tenant `name`) gave up without being served."""
        self._drop(seat, name)
        self._rounds.leave(name, 0.0)

    def serve(self, seat: Seat, name: str) -> None:
        """`seat` (of the tenant `name`) got its slot: DRR's turn when it is first in `order()`,
        else out of turn, charged to its tenant all the same."""
        if self.order()[0] == seat:
            self._rounds.next_tenant()
        else:
            self._rounds.leave(name, 1.0)
        self._drop(seat, name)

    def _drop(self, seat: Seat, name: str) -> None:
        queue = self._queues[name]
        queue.remove(seat)
        if not queue:
            del self._queues[name]
        self._order = None

    def order(self) -> list[Seat]:
        """Every waiter, in the order DRR would serve them if no one else arrived."""
        if self._order is None:
            rounds = self._rounds.copy()
            cursors = {name: iter(queue) for name, queue in self._queues.items()}
            self._order = [next(cursors[rounds.next_tenant()]) for _ in itertools.repeat(None, len(self))]
            self._places = {seat: place for place, seat in enumerate(self._order, 1)}
        return self._order

    def position(self, seat: Seat) -> int | None:
        """`seat`'s place in `order()` (1: served next), None when it does not wait here."""
        self.order()
        return self._places.get(seat)
