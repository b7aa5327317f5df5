"""Slots: how many generations a worker runs at once, handed to one request at a time.

A slot's index is what the engine runs the request in: its own context and thread in the
simple engine, its sequence id in the batched one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rbee.common.errors import ApiError


@dataclass(eq=False)
class Slot:
    """One place for a generation, and the task holding it (None when free)."""

    index: int
    task_id: str | None = None


class SlotPool:
    """Hands out free slots; used only from the event loop thread."""

    def __init__(self, slots: list[Slot]) -> None:
        self._slots = slots

    @classmethod
    def of_size(cls, count: int) -> SlotPool:
        """A pool of `count` free slots."""
        return cls([Slot(index) for index in range(count)])

    @property
    def total(self) -> int:
        """Number of slots."""
        return len(self._slots)

    @property
    def free(self) -> int:
        """Number of slots not serving a request."""
        return sum(1 for slot in self._slots if slot.task_id is None)

    def acquire(self, task_id: str, choose: Callable[[list[int]], int] | None = None) -> Slot:
        """Claim a free slot for `task_id` (the one `choose` picks from the free indices, else the
        first), or fail with 503 ALL_SLOTS_BUSY."""
        free = [slot.index for slot in self._slots if slot.task_id is None]
        if free:
            slot = self._slots[choose(free) if choose is not None else free[0]]
            slot.task_id = task_id
            return slot
        raise ApiError(
            503,
            "ALL_SLOTS_BUSY",
            "every slot of this worker is serving a request; retry shortly",
            {"slots_total": self.total},
            headers={"Retry-After": "1"},
        )

    def release(self, slot: Slot) -> None:
        """Give a slot back once the engine has finished the generation in it."""
        slot.task_id = None
