"""The worker's side of its hive: the ready callback and periodic heartbeats."""

from __future__ import annotations

import asyncio
import logging
import os

import aiohttp

from rbee.worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)
READY_CALLBACK_ATTEMPTS = 5


class HiveLink:
    """Reports this worker's readiness and state to the hive that started it."""

    def __init__(self, runtime: WorkerRuntime, session: aiohttp.ClientSession) -> None:
        self._runtime = runtime
        self._session = session
        settings = runtime.settings
        self._base = (settings.hive_url or "").rstrip("/")

    def _auth(self) -> dict[str, str]:
        return self._runtime.settings.keyring.headers_for("hive")

    def _identity(self) -> dict[str, object]:
        settings = self._runtime.settings
        return {"worker_id": settings.worker_id, "port": settings.port, "pid": os.getpid()}

    async def run(self) -> None:
        """Tell the hive when the model is loaded, then send heartbeats until cancelled."""
        if not self._base:
            return
        await self._runtime.loaded.wait()
        await self._report_ready()
        if self._runtime.faults.no_heartbeat:
            return
        interval = self._runtime.timings.heartbeat_interval_s
        while True:
            await self._heartbeat()
            await asyncio.sleep(interval)

    async def _report_ready(self) -> None:
        for attempt in range(READY_CALLBACK_ATTEMPTS):
            try:
                async with self._session.post(
                    f"{self._base}/v1/workers/ready", json=self._identity(), headers=self._auth()
                ) as response:
                    if response.status < 300:
                        return
                    log.warning("hive refused the ready callback: HTTP %d", response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("ready callback to the hive failed: %s", exc)
            await asyncio.sleep(0.2 * 2**attempt)

    async def _heartbeat(self) -> None:
        runtime = self._runtime
        service = runtime.service
        body = {
            **self._identity(),
            "state": runtime.state,
            "slots_total": runtime.settings.slots,
            "slots_free": service.pool.free if service else 0,
            "tokens_generated": service.tokens_generated if service else 0,
            "decode_stalled": runtime.decode_stalled(),
        }
        try:
            async with self._session.post(
                f"{self._base}/v1/heartbeat", json=body, headers=self._auth()
            ) as response:
                if response.status >= 300:
                    log.warning("hive refused a heartbeat: HTTP %d", response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("heartbeat to the hive failed: %s", exc)
