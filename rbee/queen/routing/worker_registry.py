"""The queen's view of the workers: refreshed from hives, in-flight counts kept locally.

Views are replaced at every refresh, so in-flight counts live in the registry, keyed by
worker id, and survive refreshes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from rbee.common.model_refs import public_ref
from rbee.common.wire import WorkerState
from rbee.queen.routing.backend_policy import AUTO, serves

ROUTABLE_STATES = (WorkerState.IDLE, WorkerState.BUSY)
PENDING_STATES = (WorkerState.LOADING, WorkerState.CRASHED, WorkerState.UNHEALTHY)


@dataclass(eq=False)
class WorkerView:
    """What the queen knows about one worker."""

    worker_id: str
    hive_url: str
    model: str
    url: str
    slots: int
    state: WorkerState
    restarts: int = 0
    backend: str = "cpu"
    device: int | None = None
    """The GPU index on its node (None on the CPU)."""
    embedding: bool = False
    """True: the worker serves embeddings and never generation (and the other way round)."""

    def to_wire(self, in_flight: int) -> dict[str, Any]:
        """JSON form for /v2/workers/list."""
        return {
            "worker_id": self.worker_id,
            "hive_url": self.hive_url,
            "model": self.model,
            "url": self.url,
            "slots": self.slots,
            "state": self.state,
            "restarts": self.restarts,
            "backend": self.backend,
            "device": self.device,
            "embedding": self.embedding,
            "in_flight": in_flight,
        }


def pool_of(model: str, embedding: bool) -> str:
    """The name a model's workers of one kind queue, lock and add replicas under: the model (its
    public form: an https URL without its query) for generation, `<model> (embeddings)` for its
    embedding workers."""
    name = public_ref(model)
    return f"{name} (embeddings)" if embedding else name


class WorkerRegistry:
    """Workers by id; mutated only on the queen's event loop."""

    def __init__(self) -> None:
        self._workers: dict[str, WorkerView] = {}
        self._in_flight: dict[str, int] = {}

    def in_flight(self, worker_id: str) -> int:
        """Requests this queen has running on the worker."""
        return self._in_flight.get(worker_id, 0)

    def acquire(self, worker_id: str) -> None:
        """Count one more request on the worker."""
        self._in_flight[worker_id] = self.in_flight(worker_id) + 1

    def release(self, worker_id: str) -> None:
        """Count one request less on the worker."""
        left = self.in_flight(worker_id) - 1
        if left > 0:
            self._in_flight[worker_id] = left
        else:
            self._in_flight.pop(worker_id, None)

    def has_free_slot(self, worker: WorkerView) -> bool:
        """Serving and not every slot is taken by a request this queen sent."""
        return worker.state in ROUTABLE_STATES and self.in_flight(worker.worker_id) < worker.slots

    def sync(self, hive_url: str, reported: list[dict[str, Any]]) -> None:
        """Replace one hive's workers with its report, keeping in-flight counts; a worker spawned
        for a model table alias counts as a worker of the alias."""
        fresh = {k: w for k, w in self._workers.items() if w.hive_url != hive_url}
        for item in reported:
            fresh[item["worker_id"]] = WorkerView(
                worker_id=item["worker_id"],
                hive_url=hive_url,
                model=item.get("alias") or item["model"],
                url=item["url"],
                slots=item["slots"],
                state=WorkerState(item["state"]),
                restarts=item.get("restarts", 0),
                backend=item.get("backend", "cpu"),
                device=item.get("device"),
                embedding=item.get("embedding", False),
            )
        self._workers = fresh

    def get(self, worker_id: str) -> WorkerView | None:
        """The worker with this id, if known."""
        return self._workers.get(worker_id)

    def for_model(
        self, model: str, policy: str = AUTO, hive_urls: Collection[str] | None = None,
        embedding: bool = False,
    ) -> list[WorkerView]:
        """Workers of `model` that may serve `policy`, in any state (only of `hive_urls` when given):
        its embedding workers when `embedding`, else its generation workers. A worker is named
        after the ref its spawn asked for (`public_ref` of it), whatever file that resolved to."""
        name = public_ref(model)
        return [w for w in self._workers.values() if w.model == name and serves(policy, w.backend)
                and w.embedding == embedding and (hive_urls is None or w.hive_url in hive_urls)]

    def pick(
        self, model: str, policy: str = AUTO, hive_urls: Collection[str] | None = None,
        embedding: bool = False, prefer: str | None = None, slack: float = 0.0,
    ) -> WorkerView | None:
        """The serving worker of `model` for `policy` (an embedding one when `embedding`) with a
        free slot: a CUDA one first, then the least loaded; `prefer` (the worker holding the
        request's prefix) instead when it has a free slot, is of the same kind as that one and
        is at most `slack` (a share of its slots) busier."""
        candidates = [w for w in self.for_model(model, policy, hive_urls, embedding) if self.has_free_slot(w)]
        best = min(candidates, key=self._load, default=None)
        preferred = next((w for w in candidates if w.worker_id == prefer), None)
        if best is not None and preferred is not None:
            (cuda, busy), (preferred_cuda, preferred_busy) = self._load(best), self._load(preferred)
            if preferred_cuda == cuda and preferred_busy <= busy + slack:
                return preferred
        return best

    def _load(self, worker: WorkerView) -> tuple[bool, float]:
        """A worker's rank for least-busy placement: not CUDA, then the share of its slots in use."""
        return worker.backend != "cuda", self.in_flight(worker.worker_id) / worker.slots

    def all(self) -> list[WorkerView]:
        """Every known worker."""
        return list(self._workers.values())
