"""The hive of a registered node: started over SSH when it does not answer, stopped with the queen.

The queen uploads the tokens the hive needs (mode 0600, into `<data dir>/tokens/` on the node),
starts `<install_path>/bin/rbee hive` detached from the SSH session, remembers its PID, and
waits until it answers. Only a hive this queen started is stopped by it (SIGTERM over SSH, then
SIGKILL after the grace); one started by systemd or Nomad on the node is merely used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shlex
from dataclasses import dataclass
from typing import Any

from rbee.common.auth import Keyring
from rbee.common.child_commands import hive_command, token_flags
from rbee.common.config_schema import HiveOptions
from rbee.common.defaults import HIVE_START_TIMEOUT_S
from rbee.common.errors import ApiError
from rbee.common.secrets import ROLES
from rbee.queen.keys.node_keys import NodeKeys
from rbee.queen.nodes.hive_client import HiveClient
from rbee.queen.nodes.hive_preflight import check_hive
from rbee.queen.nodes.node_registry import NodeSpec
from rbee.queen.nodes.ssh import SshConnector, SshError

log = logging.getLogger(__name__)
START_POLL_S = 0.1


@dataclass(frozen=True)
class RemoteLaunch:
    """What every remote hive is started with."""

    queen_url: str
    keyring: Keyring
    ctx_size: int
    tunables: dict[str, str]
    """The `RBEE_*` tunables of the queen's environment (never a token variable)."""
    node_keys: NodeKeys
    """Where each hive's node key comes from (its token for the queen)."""


def bind_host(spec: NodeSpec) -> str:
    """The node's hive binds the address the queen dials when that is an IP literal, else all."""
    try:
        ipaddress.ip_address(spec.ssh_host)
    except ValueError:
        return "0.0.0.0"
    return spec.ssh_host


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RemoteHive:
    """Owns the lifecycle of the hive this queen starts on one node over SSH."""

    def __init__(self, spec: NodeSpec, client: HiveClient, ssh: SshConnector, launch: RemoteLaunch) -> None:
        self.name = spec.name
        self.spec = spec
        self.client = client
        self._ssh = ssh
        self._launch = launch
        self._pid: int | None = None
        self._lock = asyncio.Lock()
        self._node_key: str | None = None
        """The node key the hive this queen started reports with."""
        self.preflight: dict[str, Any] | None = None
        """The last hive preflight (see `check_hive`), None until the hive was first used."""

    async def ensure_running(self) -> None:
        """Start the node's hive over SSH unless it answers, wait until it does, and preflight it
        once (version, backends, resources) before the first use."""
        async with self._lock:
            if not await self.client.is_alive():
                self.preflight = None
                self._node_key = self._launch.node_keys.issue(self.name)
                self._pid = await asyncio.to_thread(self._start_blocking)
                log.info("started the hive of node %s over SSH (remote pid %d)", self.name, self._pid)
                await self._wait_alive()
            if self.preflight is None:
                self.preflight = await check_hive(self.client, self.name)
                log.info("hive of node %s passed preflight: rbee %s, backends %s", self.name,
                         self.preflight["version"],
                         ", ".join(b["name"] for b in self.preflight["backends"] if b.get("available")))

    def command(self) -> str:
        """The shell command that starts the hive detached and prints its PID."""
        spec, launch = self.spec, self._launch
        data = spec.data_dir
        options = HiveOptions(host=bind_host(spec), advertise_host=spec.ssh_host, port=spec.hive_port,
                              data_dir=data, queen_url=launch.queen_url, ctx_size=launch.ctx_size)
        tokens = token_flags("hive", {role: f"{data}/tokens/{role}.token" for role in ROLES
                                      if self._secret(role) is not None})
        argv = hive_command(options, tokens, (spec.rbee_command,))
        env = [f"{name}={value}" for name, value in sorted(launch.tunables.items())]
        quoted = " ".join(shlex.quote(part) for part in ["env", *env, "setsid", "nohup", *argv])
        log_file = shlex.quote(f"{data}/logs/hive.log")
        return f"cd / || exit 1; {quoted} >> {log_file} 2>&1 < /dev/null & echo $!"

    def _secret(self, role: str) -> str | None:
        """What the hive is given as `role`'s token: its node key for the queen, else the queen's."""
        return self._node_key if role == "queen" else self._launch.keyring.secret(role)

    def _start_blocking(self) -> int:
        spec, keyring = self.spec, self._launch.keyring
        if keyring.secret("hive") is None and not _is_loopback(bind_host(spec)):
            raise ApiError(
                503, "NODE_NEEDS_TOKENS",
                f"the hive of node {self.name} would listen on {bind_host(spec)}, which needs a token: "
                "start the queen with --hive-token-file and --worker-token-file (and --token-file)",
                {"node": self.name})
        data = shlex.quote(spec.data_dir)
        with self._ssh.session(spec) as session:
            prepared = session.run(f"mkdir -p {data}/logs && mkdir -p -m 700 {data}/tokens")
            if prepared.exited != 0:
                raise SshError(
                    503, "HIVE_START_FAILED",
                    f"cannot create the hive's data dir {spec.data_dir} on {spec.ssh_host} as "
                    f"{spec.ssh_user}; give --hive-data-dir of a writable folder", "start",
                    node=self.name)
            for role in ROLES:
                secret = self._secret(role)
                if secret is not None:
                    session.write_private(f"{spec.data_dir}/tokens/{role}.token", secret + "\n")
            started = session.run(self.command())
        pid = started.stdout.strip()
        if started.exited != 0 or not pid.isdigit():
            raise SshError(
                503, "HIVE_START_FAILED",
                f"could not start rbee hive on {spec.ssh_host} (exit {started.exited}); "
                f"see {spec.data_dir}/logs/hive.log on the node", "start", node=self.name)
        return int(pid)

    async def _wait_alive(self) -> None:
        if await self.client.wait_alive(HIVE_START_TIMEOUT_S):
            return
        raise ApiError(
            503, "HIVE_UNAVAILABLE",
            f"the hive of node {self.name} did not answer at {self.client.base_url} within "
            f"{HIVE_START_TIMEOUT_S:.0f} s; see {self.spec.data_dir}/logs/hive.log on the node",
            {"node": self.name})

    def reload(self) -> None:
        """SIGHUP: upload the queen's current tokens again and have the hive re-read them."""
        if self._pid is not None:
            asyncio.get_running_loop().run_in_executor(None, self._reload_blocking, self._pid)

    def _reload_blocking(self, pid: int) -> None:
        try:
            with self._ssh.session(self.spec) as session:
                for role in ROLES:
                    secret = self._secret(role)
                    if secret is not None:
                        session.write_private(f"{self.spec.data_dir}/tokens/{role}.token", secret + "\n")
                session.run(f"kill -HUP {pid}")
        except ApiError as exc:
            log.warning("could not pass SIGHUP to the hive of node %s: %s", self.name, exc.message)

    async def stop(self, grace_s: float) -> None:
        """Stop the hive this queen started (it drains and stops its workers first)."""
        pid, self._pid = self._pid, None
        if pid is None:
            return
        try:
            await asyncio.to_thread(self._stop_blocking, pid, grace_s)
        except ApiError as exc:
            log.warning("could not stop the hive of node %s (remote pid %d): %s", self.name, pid, exc.message)

    def _stop_blocking(self, pid: int, grace_s: float) -> None:
        polls = max(1, int(grace_s / START_POLL_S))
        script = (
            f"kill -TERM {pid} 2>/dev/null || exit 0; "
            f"for i in $(seq {polls}); do kill -0 {pid} 2>/dev/null || exit 0; sleep {START_POLL_S}; done; "
            f"kill -KILL {pid}; echo killed"
        )
        with self._ssh.session(self.spec) as session:
            result = session.run(script, timeout=grace_s + self._ssh.timings.command_timeout_s)
        verdict = "SIGKILL after the grace" if "killed" in result.stdout else "stopped"
        log.info("hive of node %s (remote pid %d): %s", self.name, pid, verdict)
