"""The queen's view of the workers: refreshed from the hive, in-flight counts kept locally."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(eq=False)
class WorkerView:
    """What the queen knows about one worker."""

    worker_id: str
    model: str
    url: str
    slots: int
    state: str
    in_flight: int = 0

    @property
    def has_free_slot(self) -> bool:
        """Ready and not every slot is taken by a request this queen sent."""
        return self.state == "ready" and self.in_flight < self.slots

    def to_wire(self) -> dict[str, Any]:
        """JSON form for /v2/workers/list."""
        return {
            "worker_id": self.worker_id,
            "model": self.model,
            "url": self.url,
            "slots": self.slots,
            "state": self.state,
            "in_flight": self.in_flight,
        }


class WorkerRegistry:
    """Workers by id; mutated only on the queen's event loop."""

    def __init__(self) -> None:
        self._workers: dict[str, WorkerView] = {}

    def sync(self, reported: list[dict[str, Any]]) -> None:
        """Replace the set of workers with the hive's list, keeping in-flight counts."""
        fresh: dict[str, WorkerView] = {}
        for item in reported:
            known = self._workers.get(item["worker_id"])
            fresh[item["worker_id"]] = WorkerView(
                worker_id=item["worker_id"],
                model=item["model"],
                url=item["url"],
                slots=item["slots"],
                state=item["state"],
                in_flight=known.in_flight if known else 0,
            )
        self._workers = fresh

    def get(self, worker_id: str) -> WorkerView | None:
        """The worker with this id, if known."""
        return self._workers.get(worker_id)

    def for_model(self, model: str) -> list[WorkerView]:
        """Workers serving `model`, in any state."""
        return [w for w in self._workers.values() if w.model == model]

    def pick(self, model: str) -> WorkerView | None:
        """The least-loaded ready worker of `model` with a free slot."""
        candidates = [w for w in self.for_model(model) if w.has_free_slot]
        return min(candidates, key=lambda w: w.in_flight / w.slots, default=None)

    def all(self) -> list[WorkerView]:
        """Every known worker."""
        return list(self._workers.values())
