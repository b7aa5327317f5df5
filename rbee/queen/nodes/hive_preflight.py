"""The queen's preflight of a node's hive: answers, runs a compatible release, and what it can run on."""

from __future__ import annotations

import asyncio
from typing import Any

from rbee import __version__
from rbee.common.errors import ApiError
from rbee.queen.nodes.hive_client import HiveClient
from rbee.queen.nodes.node_registry import utc_now
from rbee.queen.nodes.ssh_preflight import compatible


async def check_hive(client: HiveClient, node: str) -> dict[str, Any]:
    """Health, version, backends and resources of a hive that answers; 503 when its release differs."""
    health = await client.health()
    version = str(health.get("version", ""))
    if not compatible(version, __version__):
        raise ApiError(
            503, "HIVE_VERSION_MISMATCH",
            f"the hive of node {node} runs rbee {version or 'of an unknown release'}, the queen runs "
            f"{__version__}: install the same release on the node and restart its hive",
            {"node": node, "hive_version": version, "queen_version": __version__})
    backends, resources = await asyncio.gather(client.backends(), client.resources())
    return {
        "checked_at": utc_now(),
        "hive_url": client.base_url,
        "version": version,
        "backends": backends,
        "resources": resources,
    }
