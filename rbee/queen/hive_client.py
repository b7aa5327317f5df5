"""The queen's client for one hive's HTTP API."""

from __future__ import annotations

from typing import Any

import aiohttp

from rbee.common.http import get_json, post_json


class HiveClient:
    """Calls a hive on behalf of the queen."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session

    async def is_alive(self) -> bool:
        """True when the hive answers its health check."""
        try:
            async with self._session.get(
                f"{self.base_url}/v1/health", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def spawn_worker(self, model: str, slots: int) -> dict[str, Any]:
        """Ask the hive to start a worker; returns its record (state `loading`)."""
        body = {"model": model, "slots": slots}
        return await post_json(self._session, f"{self.base_url}/v1/workers/spawn", body, "hive")

    async def stop_worker(self, worker_id: str) -> dict[str, Any]:
        """Ask the hive to drain and stop one worker for good."""
        body = {"worker_id": worker_id}
        return await post_json(self._session, f"{self.base_url}/v1/workers/stop", body, "hive")

    async def list_workers(self) -> list[dict[str, Any]]:
        """The hive's live workers."""
        answer = await get_json(self._session, f"{self.base_url}/v1/workers/list", "hive")
        return answer["workers"]

    async def list_models(self) -> list[dict[str, Any]]:
        """The hive's catalog."""
        answer = await get_json(self._session, f"{self.base_url}/v1/models/list", "hive")
        return answer["models"]
