"""`GET /v2/prometheus/targets`: Prometheus HTTP service discovery (`http_sd_configs`) of the queen,
its hives and their workers (scope `admin`: it maps the cluster's addresses)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from rbee.queen.api.keys import STATUS
from rbee.queen.cluster_status import places_of
from rbee.queen.scrape_targets import target_groups

TARGETS_PATH = "/v2/prometheus/targets"


async def prometheus_targets(request: web.Request) -> web.Response:
    """The scrape targets: the queen at the address this request reached it at, every hive that
    sends heartbeats (a stale one stays listed, so its target shows down) and every worker."""
    sources = request.app[STATUS]
    known = places_of(sources, await asyncio.to_thread(sources.nodes.all))
    node_of = {url: name for name, url, _ in known}
    heard = [view.hive_url for view in sources.hives.all()]
    queen_url = f"{request.scheme}://{request.host}"
    return web.json_response(target_groups(queen_url, node_of, heard, sources.registry.all()))
