"""HTTP handlers of the node registry: `/v2/registry/beehives/{add,list,remove}`."""

from __future__ import annotations

from aiohttp import web

from rbee.common.errors import read_json_object
from rbee.common.wire_requests import NodeRemove
from rbee.queen.api.keys import NODES
from rbee.queen.nodes.node_spec_checks import NodeAdd


async def add_node(request: web.Request) -> web.Response:
    """POST /v2/registry/beehives/add: preflight a node over SSH and store it (201)."""
    body = NodeAdd.parse(await read_json_object(request))
    node, replaced = await request.app[NODES].add(body.spec(), body.update, body.accept_new_host_key)
    return web.json_response({"node": node.to_wire(), "replaced": replaced}, status=201)


async def list_nodes(request: web.Request) -> web.Response:
    """GET /v2/registry/beehives/list: every node with its SSH preflight and its hive's last preflight."""
    return web.json_response({"nodes": await request.app[NODES].listing()})


async def remove_node(request: web.Request) -> web.Response:
    """POST /v2/registry/beehives/remove: forget a node (404 when unknown)."""
    name = NodeRemove.parse(await read_json_object(request)).name
    await request.app[NODES].remove(name)
    return web.json_response({"removed": name})
