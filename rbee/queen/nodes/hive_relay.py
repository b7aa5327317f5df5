"""Relaying a hive's event streams through the queen: its logs (for `rbee logs`) and the progress
of a model download it runs (for `rbee pull`).

For logs the queen passes `lines`, `follow` and `source` on to the hive (which validates them) and
never starts a hive to read them: a hive that does not answer is 503 HIVE_UNAVAILABLE. A pull
starts the node's hive when the queen manages it, then starts (or joins) the download there.
The hive's event stream is copied as it arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from rbee.common.errors import ApiError
from rbee.common.http import Headers, raise_for_error
from rbee.common.wire_requests import ModelDownload
from rbee.queen.nodes.hive_directory import HiveDirectory

log = logging.getLogger(__name__)
FORWARDED = ("lines", "follow", "source")
RELAY_POLL_S = 1.0
"""How often a quiet relayed stream checks whether the queen is stopping."""


@dataclass(frozen=True)
class HiveRelay:
    """How the queen reaches each node's hive for a stream."""

    directory: HiveDirectory
    session: aiohttp.ClientSession
    auth: Headers

    async def logs(self, node: str, query: Mapping[str, str]) -> aiohttp.ClientResponse:
        """The hive's log stream for `node`, checked for an error answer."""
        handle = await self.directory.get(node)
        params = {key: query[key] for key in FORWARDED if key in query}
        return await self._open(node, f"{handle.client.base_url}/v1/logs", params)

    async def pull(self, node: str, download: ModelDownload) -> tuple[dict[str, Any], aiohttp.ClientResponse]:
        """Start (or join) the download of `download.model` on `node`'s hive: the job as the hive
        reported it and its progress stream."""
        handle = await self.directory.get(node)
        await handle.ensure_running()
        job = await handle.client.start_download(download.model_dump(exclude_none=True))
        url = f"{handle.client.base_url}{job['progress_url']}"
        return job, await self._open(node, url, {})

    async def _open(self, node: str, url: str, params: Mapping[str, str]) -> aiohttp.ClientResponse:
        try:
            upstream = await self.session.get(url, params=params, headers=self.auth())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(503, "HIVE_UNAVAILABLE", f"the hive of node {node} does not answer",
                           {"node": node}, headers={"Retry-After": "1"}) from exc
        try:
            await raise_for_error(upstream, "hive")
        except BaseException:
            upstream.release()
            raise
        return upstream


async def copy(upstream: aiohttp.ClientResponse, response: web.StreamResponse, stop: asyncio.Event) -> None:
    """Copy the hive's bytes until it ends the stream or the queen stops."""
    chunks = upstream.content.iter_any()
    while not stop.is_set():
        try:
            chunk = await asyncio.wait_for(anext(chunks), RELAY_POLL_S)
        except TimeoutError:
            continue
        except StopAsyncIteration:
            return
        except aiohttp.ClientError as exc:
            log.warning("a stream from the hive broke off: %s", exc)
            return
        await response.write(chunk)
