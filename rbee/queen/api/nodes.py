"""HTTP handlers of the node registry: `/v2/registry/beehives/{add,list,remove}`."""

from __future__ import annotations

from aiohttp import web

from rbee.common.errors import read_json_object
from rbee.common.validation import check_bool, check_node_name
from rbee.queen.api.keys import NODES
from rbee.queen.nodes.node_spec_checks import parse_spec


async def add_node(request: web.Request) -> web.Response:
    """POST /v2/registry/beehives/add: preflight a node over SSH and store it (201)."""
    body = await read_json_object(request)
    spec = parse_spec(body)
    update = check_bool("update", body.get("update", False))
    accept_new = check_bool("accept_new_host_key", body.get("accept_new_host_key", False))
    node, replaced = await request.app[NODES].add(spec, update, accept_new)
    return web.json_response({"node": node.to_wire(), "replaced": replaced}, status=201)


async def list_nodes(request: web.Request) -> web.Response:
    """GET /v2/registry/beehives/list: every node with its SSH preflight and its hive's last preflight."""
    return web.json_response({"nodes": await request.app[NODES].listing()})


async def remove_node(request: web.Request) -> web.Response:
    """POST /v2/registry/beehives/remove: forget a node (404 when unknown)."""
    body = await read_json_object(request)
    name = check_node_name("name", body.get("name"))
    await request.app[NODES].remove(name)
    return web.json_response({"removed": name})
