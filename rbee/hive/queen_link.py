"""The hive's heartbeats to its queen: who it is and the state of every worker it owns."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from rbee import __version__
from rbee.common.http import Headers
from rbee.hive.supervisor import WorkerSupervisor

log = logging.getLogger(__name__)


async def send_heartbeats(
    queen_url: str,
    hive_url: str,
    supervisor: WorkerSupervisor,
    session: aiohttp.ClientSession,
    auth: Headers,
) -> None:
    """POST `/v2/heartbeat` to the queen every heartbeat interval until cancelled."""
    url = f"{queen_url.rstrip('/')}/v2/heartbeat"
    interval = supervisor.timings.heartbeat_interval_s
    failing = False
    while True:
        body = {
            "hive_url": hive_url,
            "version": __version__,
            "workers": [record.to_wire() for record in supervisor.list()],
        }
        try:
            async with session.post(url, json=body, headers=auth()) as response:
                if response.status >= 300:
                    log.warning("queen refused a heartbeat: HTTP %d", response.status)
            if failing:
                log.info("heartbeats reach the queen again")
            failing = False
        except (aiohttp.ClientError, TimeoutError) as exc:
            if not failing:
                log.warning("heartbeat to the queen at %s failed: %s", queen_url, exc)
            failing = True
        await asyncio.sleep(interval)
