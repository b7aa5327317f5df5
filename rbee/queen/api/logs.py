"""`GET /v2/logs?node=N`: a node's hive and worker logs, relayed from its hive."""

from __future__ import annotations

from aiohttp import web

from rbee.common import sse
from rbee.common.daemon import STOP_REQUESTED
from rbee.common.validation import check_node_name
from rbee.queen.api.keys import HIVE_RELAY
from rbee.queen.nodes.hive_relay import copy


async def node_logs(request: web.Request) -> web.StreamResponse:
    """Relay the hive's `/v1/logs` stream of the node named by `node`."""
    node = check_node_name("node", request.query.get("node"))
    async with await request.app[HIVE_RELAY].logs(node, request.query) as upstream:
        response = await sse.open_stream(request)
        await copy(upstream, response, request.app[STOP_REQUESTED])
    return response
