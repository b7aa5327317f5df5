"""The hive's heartbeats to its queen: who it is and the state of every worker it owns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp

from rbee import __version__
from rbee.common.http import Headers
from rbee.hive.supervisor import WorkerSupervisor

log = logging.getLogger(__name__)

QUEEN_TIMEOUT_S = 5


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


async def heartbeats(
    queen_url: str, hive_url: str, supervisor: WorkerSupervisor, auth: Headers
) -> AsyncIterator[None]:
    """A cleanup context: heartbeats to the queen from the hive's start to its cleanup."""
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=QUEEN_TIMEOUT_S))
    task = asyncio.create_task(send_heartbeats(queen_url, hive_url, supervisor, session, auth))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await session.close()
