"""Who a request waits for in the admission queue: the key's name and its fair-share weight."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Tenant:
    """Who a request is queued for: the API key's name and its fair-share weight."""
    name: str
    weight: float = 1.0


ANONYMOUS = Tenant("anonymous")
TENANT = web.RequestKey("tenant", Tenant)
"""Set by authentication; handlers read `request.get(TENANT, ANONYMOUS)`."""
