"""The hive on the queen's own machine: started on demand, stopped with the queen."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Protocol

from rbee.common import processes
from rbee.common.auth import Keyring
from rbee.common.child_commands import hive_command, token_flags
from rbee.common.config_schema import HiveOptions
from rbee.common.defaults import HIVE_START_TIMEOUT_S
from rbee.common.errors import ApiError
from rbee.queen.keys.node_keys import NodeKeys
from rbee.queen.nodes.hive_client import HiveClient

log = logging.getLogger(__name__)
LOCAL_NODE = "localhost"


class LocalHiveSettings(Protocol):
    """The queen settings a local hive is started with."""

    port: int
    hive_port: int
    data_dir: Path
    worker_port_start: int
    worker_ctx_size: int
    keyring: Keyring
    manage_local_hive: bool
    local_queen_url: str


class LocalHive:
    """Owns the lifecycle of a hive process the queen started itself."""

    def __init__(self, client: HiveClient, settings: LocalHiveSettings, node_keys: NodeKeys) -> None:
        self.name = LOCAL_NODE
        self.client = client
        self._settings = settings
        self._data_dir = settings.data_dir / "hive"
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._node_keys = node_keys

    async def ensure_running(self) -> None:
        """Start the local hive unless one already answers, and wait until it does."""
        async with self._lock:
            if await self.client.is_alive():
                return
            if not self._settings.manage_local_hive:
                raise ApiError(
                    503, "HIVE_UNAVAILABLE",
                    f"the local hive at {self.client.base_url} does not answer; the queen runs with "
                    "--external-hive, so its supervisor starts it (`systemctl status rbee-hive`)",
                    headers={"Retry-After": "1"})
            if self._process is not None and self._process.returncode is None:
                raise ApiError(
                    503, "HIVE_UNAVAILABLE",
                    f"the local hive (pid {self._process.pid}) runs but does not answer; see hive.log",
                    headers={"Retry-After": "1"})
            if self._process is None or self._process.returncode is not None:
                self._process = await processes.spawn(self._command(), self._data_dir / "logs" / "hive.log")
                log.info(
                    "started local hive (pid %d) on port %d",
                    self._process.pid,
                    self._settings.hive_port,
                )
            await self._wait_alive()

    def _command(self) -> list[str]:
        settings = self._settings
        options = HiveOptions(port=settings.hive_port, data_dir=self._data_dir,
                              worker_port_start=settings.worker_port_start, ctx_size=settings.worker_ctx_size,
                              queen_url=settings.local_queen_url)
        node_key = self._node_keys.issue_file(self.name)
        return hive_command(options, settings.keyring.child_args("hive", ("hive", "worker"))
                            + token_flags("hive", {"queen": node_key}))

    async def _wait_alive(self) -> None:
        process = self._process
        if not await self.client.wait_alive(HIVE_START_TIMEOUT_S, lambda: process.returncode is not None):
            raise ApiError(503, "HIVE_UNAVAILABLE", "the local hive did not start; see hive.log")

    def reload(self) -> None:
        """Pass a SIGHUP on to the hive this queen started, so it re-reads its tokens too."""
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGHUP)

    async def stop(self, grace_s: float) -> None:
        """Stop the hive this queen started (it drains and stops its workers first)."""
        if self._process is not None:
            await processes.terminate(self._process, grace_s, "local hive")
