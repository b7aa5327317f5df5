"""Who a request waits for in the admission queue: its API key's name and fair-share weight.

Authentication puts the request's `Tenant` under `TENANT`; handlers read
`request.get(TENANT, ANONYMOUS)`, so a queen without named keys queues every request for
`ANONYMOUS` (one tenant: the admission queue is first come, first served).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Tenant:
    """Who a request is queued for: the API key's name and its fair-share weight."""

    name: str
    weight: float = 1.0
    """Share of a model's freed slots relative to the other keys waiting (2.0: twice 1.0's)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"tenant {self.name!r}: weight must be a finite number above 0")


ANONYMOUS = Tenant("anonymous")
TENANT = web.RequestKey("tenant", Tenant)
"""Set by authentication; handlers read `request.get(TENANT, ANONYMOUS)`."""
