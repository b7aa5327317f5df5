"""Making room for a spawn: which idle workers to stop when a new one lacks RAM or VRAM.

Candidates are the hive's idle workers (every slot free, as their heartbeats and a last look at
each worker's `/health` say), least recently used first. The hive stops the shortest run of them,
from the least recently used on, after which the spawn's preflight passes; when stopping all of
them would not be enough, it stops none. A worker with a slot in use is never a candidate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from rbee.common.wire import WorkerState

log = logging.getLogger(__name__)
EVICTABLE_CODES = frozenset({"INSUFFICIENT_RAM", "INSUFFICIENT_VRAM"})
"""The preflight refusals that stopping idle workers can cure."""
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Candidate:
    """An idle worker that could be stopped: its id, when it last served, the RAM it holds."""

    worker_id: str
    last_used_at: float
    ram_bytes: int
    url: str = ""


Fits = Callable[[frozenset[str]], bool]
"""Whether the spawn would pass its preflight were these workers gone."""


def least_recently_used(candidates: Sequence[Candidate], fits: Fits) -> list[Candidate] | None:
    """The shortest run of `candidates`, least recently used first, whose stopping lets the spawn
    fit; None when even all of them would not."""
    ordered = sorted(candidates, key=lambda candidate: candidate.last_used_at)
    for count in range(1, len(ordered) + 1):
        chosen = ordered[:count]
        if fits(frozenset(c.worker_id for c in chosen)):
            return chosen
    return None


async def still_idle(session: aiohttp.ClientSession, candidate: Candidate) -> bool:
    """Ask the worker itself (`/health`, public) whether every slot is free right now; a worker
    that does not answer is not stopped for a spawn."""
    try:
        async with session.get(f"{candidate.url}/health",
                               timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)) as response:
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.info("not evicting worker %s: its health check failed (%s)", candidate.worker_id, exc)
        return False
    return body.get("state") == WorkerState.IDLE and body.get("slots_free") == body.get("slots_total")
