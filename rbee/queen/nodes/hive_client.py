"""The queen's client for one hive's HTTP API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp

from rbee.common.http import Headers, get_json, no_headers, post_json
from rbee.common.wire_requests import SpawnRequest, WorkerTuning

ALIVE_POLL_S = 0.1


class HiveClient:
    """Calls a hive on behalf of the queen."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, auth: Headers = no_headers) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._auth = auth

    async def is_alive(self) -> bool:
        """True when the hive answers its health check."""
        try:
            async with self._session.get(
                f"{self.base_url}/v1/health", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def wait_alive(self, timeout_s: float, gave_up: Callable[[], bool] = lambda: False) -> bool:
        """Poll the health check until it answers (True), `timeout_s` passes or `gave_up()` (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and not gave_up():
            if await self.is_alive():
                return True
            await asyncio.sleep(ALIVE_POLL_S)
        return False

    async def health(self) -> dict[str, Any]:
        """The hive's health answer (status, version, pid, workers)."""
        return await self._get("/v1/health")

    async def backends(self) -> list[dict[str, Any]]:
        """What the hive's engine build can run on (CPU / CUDA / Metal)."""
        return (await self._get("/v1/backends"))["backends"]

    async def resources(self) -> dict[str, Any]:
        """The node's RAM, disk, CPUs and GPUs now."""
        return await self._get("/v1/resources")

    async def spawn_worker(
        self, model: str, slots: int, backend: str = "auto", embedding: bool = False,
        alias: str | None = None, tuning: WorkerTuning | None = None,
    ) -> dict[str, Any]:
        """Ask the hive to start a worker on `backend` (a policy: `auto` lets the hive choose), one
        serving embeddings when `embedding`, served as model table alias `alias` and run with its
        `tuning`; returns its record (state `loading`, with the backend and GPU it got)."""
        body = SpawnRequest(model=model, slots=slots, backend=backend, embedding=embedding, alias=alias,
                            tuning=tuning or WorkerTuning())
        wire = body.model_dump(mode="json", exclude_none=True)
        if not wire["tuning"]:
            del wire["tuning"]
        return await self._post("/v1/workers/spawn", wire)

    async def stop_worker(self, worker_id: str) -> dict[str, Any]:
        """Ask the hive to drain and stop one worker for good."""
        body = {"worker_id": worker_id}
        return await self._post("/v1/workers/stop", body)

    async def list_workers(self) -> list[dict[str, Any]]:
        """The hive's live workers."""
        answer = await self._get("/v1/workers/list")
        return answer["workers"]

    async def list_models(self) -> list[dict[str, Any]]:
        """The hive's catalog."""
        return (await self.catalog())["models"]

    async def catalog(self) -> dict[str, Any]:
        """The hive's catalog (`models`) and the names it can install with no download
        (`installable`)."""
        return await self._get("/v1/models/list")

    async def start_download(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start (or join) a download in the hive; its job record, with `progress_url`."""
        return await self._post("/v1/models/download", body)

    async def show_model(self, name: str) -> dict[str, Any]:
        """What the hive knows of one model of its catalog: its file and its GGUF header's facts."""
        return await self._get(f"/v1/models/show?{urlencode({'name': name})}")

    async def _get(self, path: str) -> dict[str, Any]:
        return await get_json(self._session, f"{self.base_url}{path}", "hive", self._auth())

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await post_json(self._session, f"{self.base_url}{path}", body, "hive", self._auth())
