"""Relaying a node's hive and worker logs from its hive's `/v1/logs` stream (for `rbee logs`).

The queen passes `lines`, `follow` and `source` on to the hive (which validates them) and copies
the hive's event stream as it arrives. It never starts a hive to read its logs: a hive that does
not answer is 503 HIVE_UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from rbee.common.errors import ApiError
from rbee.common.http import Headers, raise_for_error
from rbee.queen.nodes.hive_directory import HiveDirectory

log = logging.getLogger(__name__)
FORWARDED = ("lines", "follow", "source")
RELAY_POLL_S = 1.0
"""How often a quiet relayed stream checks whether the queen is stopping."""


@dataclass(frozen=True)
class LogRelay:
    """How the queen reaches each node's hive."""

    directory: HiveDirectory
    session: aiohttp.ClientSession
    auth: Headers

    async def open(self, node: str, query: Mapping[str, str]) -> aiohttp.ClientResponse:
        """The hive's log stream for `node`, checked for an error answer."""
        handle = await self.directory.get(node)
        params = {key: query[key] for key in FORWARDED if key in query}
        try:
            upstream = await self.session.get(f"{handle.client.base_url}/v1/logs", params=params,
                                              headers=self.auth())
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
            log.warning("log stream from the hive broke off: %s", exc)
            return
        await response.write(chunk)
