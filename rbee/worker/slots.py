"""Slots: one llama context and one thread each, handed to one request at a time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rbee.common.errors import ApiError


@dataclass(eq=False)
class Slot:
    """A llama context and the only thread allowed to touch it."""

    index: int
    context: Any
    executor: ThreadPoolExecutor = field(init=False)
    task_id: str | None = None

    def __post_init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"slot-{self.index}")


class SlotPool:
    """Hands out free slots; used only from the event loop thread."""

    def __init__(self, slots: list[Slot]) -> None:
        self._slots = slots

    @property
    def total(self) -> int:
        """Number of slots."""
        return len(self._slots)

    @property
    def free(self) -> int:
        """Number of slots not serving a request."""
        return sum(1 for slot in self._slots if slot.task_id is None)

    def acquire(self, task_id: str) -> Slot:
        """Claim a free slot for `task_id`, or fail with 503 ALL_SLOTS_BUSY."""
        for slot in self._slots:
            if slot.task_id is None:
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
        """Give a slot back once its thread has finished with the context."""
        slot.task_id = None

    def shutdown(self) -> None:
        """Stop the slot threads (after their current generation returns)."""
        for slot in self._slots:
            slot.executor.shutdown(wait=False, cancel_futures=True)
