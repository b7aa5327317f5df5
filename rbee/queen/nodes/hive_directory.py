"""Every node the queen can route to, each with the one object that owns its hive's lifecycle.

`localhost` is the hive on the queen's own machine (unless the queen runs with
`--no-local-hive`); every node of the registry has a RemoteHive, made on first use and
forgotten when the node is removed or replaced (stopping the hive this queen started there).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from rbee.common.errors import ApiError
from rbee.queen.nodes.hive_client import HiveClient
from rbee.queen.nodes.local_hive import LOCAL_NODE
from rbee.queen.nodes.node_registry import NodeRegistry, NodeSpec
from rbee.queen.nodes.remote_hive import RemoteHive

log = logging.getLogger(__name__)


class HiveHandle(Protocol):
    """The owner of one node's hive."""

    name: str
    client: HiveClient

    async def ensure_running(self) -> None:
        """Make the hive answer (starting it when this queen may), or raise ApiError."""

    async def stop(self, grace_s: float) -> None:
        """Stop the hive if this queen started it."""

    def reload(self) -> None:
        """Pass a token reload on to the hive if this queen started it."""


class HiveDirectory:
    """Node name → hive handle; mutated only on the queen's event loop."""

    def __init__(
        self,
        local: HiveHandle | None,
        nodes: NodeRegistry,
        make_remote: Callable[[NodeSpec], RemoteHive],
        stop_grace_s: float,
    ) -> None:
        self.local = local
        self._nodes = nodes
        self._make_remote = make_remote
        self._stop_grace_s = stop_grace_s
        self._remote: dict[str, RemoteHive] = {}
        self._retired: set[asyncio.Task[None]] = set()

    async def get(self, name: str) -> HiveHandle:
        """The handle of node `name`; 404 NODE_NOT_FOUND when there is no such node."""
        if name == LOCAL_NODE and self.local is not None:
            return self.local
        node = await asyncio.to_thread(self._nodes.get, name)
        if node is None:
            raise ApiError(404, "NODE_NOT_FOUND", "no node of that name is registered",
                           {"node": name})
        return self._remote_for(node.spec)

    async def all(self) -> list[HiveHandle]:
        """Every node: `localhost` first (when served), then the registered nodes by name."""
        nodes = await asyncio.to_thread(self._nodes.all)
        remote: list[HiveHandle] = [self._remote_for(node.spec) for node in nodes]
        return [self.local, *remote] if self.local is not None else remote

    def by_url(self, hive_url: str) -> HiveHandle | None:
        """The handle whose hive answers at `hive_url`, among those in use."""
        handles = [self.local, *self._remote.values()]
        return next((h for h in handles if h is not None and h.client.base_url == hive_url), None)

    def in_use(self) -> list[HiveHandle]:
        """The handles this queen has used: the local hive (when served) and the remote ones."""
        return [h for h in (self.local, *self._remote.values()) if h is not None]

    def _remote_for(self, spec: NodeSpec) -> RemoteHive:
        handle = self._remote.get(spec.name)
        if handle is not None and handle.spec == spec:
            return handle
        if handle is not None:
            self.forget(spec.name)
        handle = self._make_remote(spec)
        self._remote[spec.name] = handle
        return handle

    def preflight(self, name: str) -> dict[str, Any] | None:
        """The last hive preflight of node `name`, when its hive has been used by this queen."""
        handle = self._remote.get(name)
        return handle.preflight if handle is not None else None

    def forget(self, name: str) -> None:
        """Drop a removed or replaced node, stopping in the background the hive this queen started."""
        handle = self._remote.pop(name, None)
        if handle is None:
            return
        task = asyncio.create_task(handle.stop(self._stop_grace_s), name=f"retire-{name}")
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    def reload(self) -> None:
        """SIGHUP: every hive this queen started re-reads its tokens."""
        for handle in self.in_use():
            handle.reload()

    async def stop_all(self) -> None:
        """Stop every hive this queen started, all nodes at once."""
        handles = self.in_use()
        self._remote.clear()
        await asyncio.gather(*(h.stop(self._stop_grace_s) for h in handles), *self._retired)
