"""`rbee setup …`: register, list and remove the nodes the queen reaches over SSH."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from rbee.cli.failures import CommandFailed, reaching
from rbee.cli.queen_access import queen_options, queen_target
from rbee.common.defaults import HIVE_PORT
from rbee.common.validation import check_node_name, check_port
from rbee.queen.nodes.node_registry import DEFAULT_INSTALL_PATH, DEFAULT_SSH_PORT

DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")


class SetupFailed(CommandFailed):
    """The queen refused, or the node cannot be set up as asked."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add `rbee setup add-node | list-nodes | remove-node`."""
    setup = sub.add_parser("setup", help="manage the nodes the queen reaches over SSH")
    actions = setup.add_subparsers(dest="setup_command", required=True)

    add = actions.add_parser("add-node", help="check a node over SSH and register it")
    add.add_argument("--name", required=True, help="node name (RFC 1123 host name)")
    add.add_argument("--ssh-host", required=True)
    add.add_argument("--ssh-port", type=int, default=DEFAULT_SSH_PORT)
    add.add_argument("--ssh-user", required=True)
    add.add_argument("--ssh-key", type=Path, default=None,
                     help="private key the queen uses (default: ~/.ssh/id_ed25519, id_ecdsa or id_rsa)")
    add.add_argument("--install-path", default=DEFAULT_INSTALL_PATH,
                     help="rbee's prefix on the node; the queen runs <install-path>/bin/rbee")
    add.add_argument("--hive-port", type=int, default=HIVE_PORT, help="port of the node's hive")
    add.add_argument("--hive-data-dir", default="",
                     help="the hive's data dir on the node (default <install-path>/var/hive)")
    add.add_argument("--update", action="store_true", help="replace a node of the same name")
    add.add_argument("--accept-new-host-key", action="store_true",
                     help="trust the node's host key on first contact (a changed key is still refused)")
    queen_options(add)
    add.set_defaults(func=run_add)

    listing = actions.add_parser("list-nodes", help="show the registered nodes")
    listing.add_argument("--json", action="store_true", help="print the queen's JSON answer")
    queen_options(listing)
    listing.set_defaults(func=run_list)

    remove = actions.add_parser("remove-node", help="forget a node")
    remove.add_argument("--name", required=True)
    queen_options(remove)
    remove.set_defaults(func=run_remove)


def default_key(home: Path | None = None) -> Path:
    """The first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa that exists."""
    ssh_dir = (home or Path.home()) / ".ssh"
    for name in DEFAULT_KEYS:
        if (ssh_dir / name).is_file():
            return ssh_dir / name
    raise SetupFailed(f"no SSH key found in {ssh_dir}; give --ssh-key PATH")


def _add_body(args: argparse.Namespace) -> dict[str, Any]:
    key = args.ssh_key.expanduser() if args.ssh_key else default_key()
    return {
        "name": check_node_name("--name", args.name),
        "ssh_host": check_node_name("--ssh-host", args.ssh_host),
        "ssh_port": check_port("--ssh-port", args.ssh_port),
        "ssh_user": args.ssh_user,
        "ssh_key": str(key.absolute()),
        "install_path": args.install_path,
        "hive_port": check_port("--hive-port", args.hive_port),
        "hive_data_dir": args.hive_data_dir,
        "update": args.update,
        "accept_new_host_key": args.accept_new_host_key,
    }


async def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None) -> Any:
    queen, headers = queen_target(args)
    timeout = aiohttp.ClientTimeout(total=None, connect=5)
    with reaching("queen", queen):
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            async with session.request(method, f"{queen}{path}", json=body) as response:
                raw = await response.read()
    try:
        answer = json.loads(raw)
    except ValueError:
        raise SetupFailed(f"the queen answered HTTP {response.status} without JSON") from None
    if response.status >= 400:
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        raise SetupFailed(f"{error.get('code', 'HTTP_' + str(response.status))}: {error.get('message', '')}")
    return answer


def _run(coro_factory) -> int:
    asyncio.run(coro_factory())
    return 0


def run_add(args: argparse.Namespace) -> int:
    """Preflight and register a node; prints what was stored."""
    async def add() -> None:
        answer = await _call(args, "POST", "/v2/registry/beehives/add", _add_body(args))
        node = answer["node"]
        verb = "updated" if answer["replaced"] else "added"
        pre = node["preflight"]
        print(f"{verb} node {node['name']}: {node['ssh_user']}@{node['ssh_host']}:{node['ssh_port']}, "
              f"rbee {pre['rbee_version']} at {node['install_path']}, latency {pre['latency_ms']} ms")
    return _run(add)


def run_list(args: argparse.Namespace) -> int:
    """Print the registered nodes as a table (or JSON)."""
    async def show() -> None:
        nodes = (await _call(args, "GET", "/v2/registry/beehives/list", None))["nodes"]
        if args.json:
            print(json.dumps(nodes, indent=2))
        elif not nodes:
            print("no nodes registered; add one with `rbee setup add-node`")
        else:
            print(format_table(nodes))
    return _run(show)


def run_remove(args: argparse.Namespace) -> int:
    """Forget a node."""
    async def remove() -> None:
        name = check_node_name("--name", args.name)
        await _call(args, "POST", "/v2/registry/beehives/remove", {"name": name})
        print(f"removed node {name}")
    return _run(remove)


def format_table(nodes: list[dict[str, Any]]) -> str:
    """Nodes as aligned columns: name, SSH target, install path, rbee version, latency, added."""
    rows = [("NAME", "SSH", "INSTALL PATH", "RBEE", "LATENCY", "ADDED")]
    for node in nodes:
        pre = node.get("preflight", {})
        rows.append((node["name"], f"{node['ssh_user']}@{node['ssh_host']}:{node['ssh_port']}",
                     node["install_path"], pre.get("rbee_version", "?"), f"{pre.get('latency_ms', '?')} ms",
                     node["added_at"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
