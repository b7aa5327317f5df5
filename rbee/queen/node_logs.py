"""`GET /v2/logs?node=N`: a node's hive and worker logs, relayed from its hive (for `rbee logs`).

The queen checks the node name, passes `lines`, `follow` and `source` on to the hive's
`/v1/logs` (which validates them) and relays the hive's event stream as it arrives. It never
starts a hive to read its logs: a hive that does not answer is 503 HIVE_UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from rbee.common import sse
from rbee.common.daemon import STOP_REQUESTED
from rbee.common.errors import ApiError
from rbee.common.http import Headers, raise_for_error
from rbee.common.validation import check_node_name
from rbee.queen.hive_directory import HiveDirectory

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


LOG_RELAY = web.AppKey("log_relay", LogRelay)


async def node_logs(request: web.Request) -> web.StreamResponse:
    """Relay the hive's `/v1/logs` stream of the node named by `node`."""
    node = check_node_name("node", request.query.get("node"))
    relay = request.app[LOG_RELAY]
    handle = await relay.directory.get(node)
    params = {key: request.query[key] for key in FORWARDED if key in request.query}
    try:
        upstream = await relay.session.get(f"{handle.client.base_url}/v1/logs", params=params,
                                           headers=relay.auth())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ApiError(503, "HIVE_UNAVAILABLE", f"the hive of node {node} does not answer",
                       {"node": node}, headers={"Retry-After": "1"}) from exc
    async with upstream:
        await raise_for_error(upstream, "hive")
        response = await sse.open_stream(request)
        await _relay(upstream, response, request.app[STOP_REQUESTED])
    return response


async def _relay(upstream: aiohttp.ClientResponse, response: web.StreamResponse, stop: asyncio.Event) -> None:
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
