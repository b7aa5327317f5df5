"""HTTP handlers of the node registry: `/v2/registry/beehives/{add,list,remove}`."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web

from rbee.common.audit import Audit
from rbee.common.errors import ApiError, read_json_object
from rbee.common.validation import MAX_PATH_CHARS, check_bool, check_node_name, check_port, invalid
from rbee.queen.node_registry import (
    DEFAULT_HIVE_PORT,
    DEFAULT_INSTALL_PATH,
    DEFAULT_SSH_PORT,
    Node,
    NodeExists,
    NodeRegistry,
    NodeSpec,
    utc_now,
)
from rbee.queen.ssh import KnownHosts, SshConnector, SshError, load_ssh_timings
from rbee.queen.ssh_preflight import SshPreflight

_SSH_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+@-]*$")


@dataclass(frozen=True)
class NodeService:
    """What the registry routes need: the store, the preflight, the audit log, and who to tell
    that a node was removed or replaced (so the hive started there is stopped)."""

    registry: NodeRegistry
    preflight: SshPreflight
    audit: Audit
    forget: Callable[[str], None]
    hive_preflight: Callable[[str], dict[str, Any] | None]


NODES = web.AppKey("nodes", NodeService)


def ssh_connector(data_dir: Path) -> SshConnector:
    """SSH to the nodes, trusting the host keys of `DATA_DIR/ssh/known_hosts` only."""
    return SshConnector(KnownHosts(data_dir / "ssh" / "known_hosts"), load_ssh_timings())


def _check_ssh_user(value: Any) -> str:
    if not isinstance(value, str) or not _SSH_USER.fullmatch(value):
        raise invalid("ssh_user", "must be a POSIX user name (lower-case letters, digits, '_', '-')")
    return value


def _check_abs_path(field_name: str, value: Any) -> str:
    """An absolute, normalised POSIX path without `..`, spaces or shell characters."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise invalid(field_name, "must be an absolute path")
    if len(value) > MAX_PATH_CHARS or not _SAFE_PATH.fullmatch(value):
        raise invalid(field_name, "must use only letters, digits and '_./+@-'")
    if ".." in PurePosixPath(value).parts or "//" in value:
        raise invalid(field_name, "must be normalised (no '..' or '//')")
    return value.rstrip("/") or "/"


def _check_key_file(value: Any) -> str:
    """The private key: an existing regular file on the queen's machine, not readable by others."""
    path = _check_abs_path("ssh_key", value)
    try:
        info = os.stat(path)
    except OSError:
        raise invalid("ssh_key", "must be an existing file on the queen's machine") from None
    if not stat.S_ISREG(info.st_mode):
        raise invalid("ssh_key", "must be a regular file")
    if info.st_mode & 0o077:
        raise invalid("ssh_key", "must not be readable by group or others (chmod 600)")
    return path


def parse_spec(body: dict[str, Any]) -> NodeSpec:
    """A validated NodeSpec from an add request."""
    return NodeSpec(
        name=check_node_name("name", body.get("name")),
        ssh_host=check_node_name("ssh_host", body.get("ssh_host")),
        ssh_port=check_port("ssh_port", body.get("ssh_port", DEFAULT_SSH_PORT)),
        ssh_user=_check_ssh_user(body.get("ssh_user")),
        ssh_key=_check_key_file(body.get("ssh_key")),
        install_path=_check_abs_path("install_path", body.get("install_path", DEFAULT_INSTALL_PATH)),
        hive_port=check_port("hive_port", body.get("hive_port", DEFAULT_HIVE_PORT)),
        hive_data_dir=_check_abs_path("hive_data_dir", data) if (data := body.get("hive_data_dir")) else "",
    )


def _exists(name: str) -> ApiError:
    return ApiError(409, "NODE_EXISTS", f"a node called {name} is already registered; "
                    "add it with --update to replace it", {"name": name})


async def add_node(request: web.Request) -> web.Response:
    """POST /v2/registry/beehives/add: preflight a node over SSH and store it (201)."""
    body = await read_json_object(request)
    spec = parse_spec(body)
    update = check_bool("update", body.get("update", False))
    accept_new = check_bool("accept_new_host_key", body.get("accept_new_host_key", False))
    nodes = request.app[NODES]
    if not update and await asyncio.to_thread(nodes.registry.get, spec.name):
        raise _exists(spec.name)
    try:
        preflight = await nodes.preflight.check(spec, accept_new)
    except SshError as failed:
        nodes.audit("node.preflight_failed", name=spec.name, ssh_host=spec.ssh_host, ssh_port=spec.ssh_port,
                    code=failed.code)
        failed.details["name"] = spec.name
        raise
    node = Node(spec, utc_now(), preflight)
    try:
        replaced = await asyncio.to_thread(nodes.registry.add, node, update)
    except NodeExists:
        raise _exists(spec.name) from None
    if replaced:
        nodes.forget(spec.name)
    nodes.audit("node.add", name=spec.name, ssh_host=spec.ssh_host, ssh_port=spec.ssh_port,
                ssh_user=spec.ssh_user, install_path=spec.install_path, replaced=replaced,
                rbee_version=preflight["rbee_version"], latency_ms=preflight["latency_ms"])
    return web.json_response({"node": node.to_wire(), "replaced": replaced}, status=201)


async def list_nodes(request: web.Request) -> web.Response:
    """GET /v2/registry/beehives/list: every node with its SSH preflight and its hive's last preflight."""
    service = request.app[NODES]
    nodes = await asyncio.to_thread(service.registry.all)
    return web.json_response(
        {"nodes": [{**node.to_wire(), "hive": service.hive_preflight(node.spec.name)} for node in nodes]}
    )


async def remove_node(request: web.Request) -> web.Response:
    """POST /v2/registry/beehives/remove: forget a node (404 when unknown)."""
    body = await read_json_object(request)
    name = check_node_name("name", body.get("name"))
    nodes = request.app[NODES]
    if not await asyncio.to_thread(nodes.registry.remove, name):
        raise ApiError(404, "NODE_NOT_FOUND", f"no node called {name} is registered", {"name": name})
    nodes.forget(name)
    nodes.audit("node.remove", name=name)
    return web.json_response({"removed": name})


def add_registry_routes(app: web.Application) -> None:
    """Register the node registry's routes (behind the queen's bearer-token middleware)."""
    app.router.add_post("/v2/registry/beehives/add", add_node)
    app.router.add_get("/v2/registry/beehives/list", list_nodes)
    app.router.add_post("/v2/registry/beehives/remove", remove_node)
