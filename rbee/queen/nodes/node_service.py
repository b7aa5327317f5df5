"""The node registry's operations: add a node after its SSH preflight, list, remove.

Each change is audited, and a node removed or replaced is forgotten by the hive directory
(so the hive started there is stopped).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rbee.common.audit import Audit
from rbee.common.errors import ApiError
from rbee.common.tunables import load_ssh_timings
from rbee.queen.nodes.node_registry import Node, NodeExists, NodeRegistry, NodeSpec, utc_now
from rbee.queen.nodes.ssh import KnownHosts, SshConnector, SshError
from rbee.queen.nodes.ssh_preflight import SshPreflight


def ssh_connector(data_dir: Path) -> SshConnector:
    """SSH to the nodes, trusting the host keys of `DATA_DIR/ssh/known_hosts` only."""
    return SshConnector(KnownHosts(data_dir / "ssh" / "known_hosts"), load_ssh_timings())


def _exists(name: str) -> ApiError:
    return ApiError(409, "NODE_EXISTS", f"a node called {name} is already registered; "
                    "add it with --update to replace it", {"name": name})


@dataclass(frozen=True)
class NodeService:
    """The store, the preflight, the audit log, and who to tell that a node was removed or
    replaced."""

    registry: NodeRegistry
    preflight: SshPreflight
    audit: Audit
    forget: Callable[[str], None]
    hive_preflight: Callable[[str], dict[str, Any] | None]

    async def add(self, spec: NodeSpec, update: bool, accept_new_host_key: bool) -> tuple[Node, bool]:
        """Preflight `spec` over SSH and store it; (the node, whether it replaced one)."""
        if not update and await asyncio.to_thread(self.registry.get, spec.name):
            raise _exists(spec.name)
        try:
            preflight = await self.preflight.check(spec, accept_new_host_key)
        except SshError as failed:
            self.audit("node.preflight_failed", name=spec.name, ssh_host=spec.ssh_host,
                       ssh_port=spec.ssh_port, code=failed.code)
            failed.details["name"] = spec.name
            raise
        node = Node(spec, utc_now(), preflight)
        try:
            replaced = await asyncio.to_thread(self.registry.add, node, update)
        except NodeExists:
            raise _exists(spec.name) from None
        if replaced:
            self.forget(spec.name)
        self.audit("node.add", name=spec.name, ssh_host=spec.ssh_host, ssh_port=spec.ssh_port,
                   ssh_user=spec.ssh_user, install_path=spec.install_path, replaced=replaced,
                   rbee_version=preflight["rbee_version"], latency_ms=preflight["latency_ms"])
        return node, replaced

    async def listing(self) -> list[dict[str, Any]]:
        """Every node with its SSH preflight and its hive's last preflight."""
        nodes = await asyncio.to_thread(self.registry.all)
        return [{**node.to_wire(), "hive": self.hive_preflight(node.spec.name)} for node in nodes]

    async def remove(self, name: str) -> None:
        """Forget a node (404 NODE_NOT_FOUND when unknown)."""
        if not await asyncio.to_thread(self.registry.remove, name):
            raise ApiError(404, "NODE_NOT_FOUND", f"no node called {name} is registered", {"name": name})
        self.forget(name)
        self.audit("node.remove", name=name)
