"""SSH preflight of a node: reachable, host key known, key accepted, commands run, rbee there.

Every failure is an SshError with its own UPPER_SNAKE code and a message that says what to do.
The blocking Fabric calls run in a thread (`SshPreflight.check`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import statistics
import time
from typing import Any

from rbee import __version__
from rbee.queen.nodes.node_registry import NodeSpec, utc_now
from rbee.queen.nodes.ssh import SshConnector, SshError, SshSession

LATENCY_PROBES = 3
_PROBE = "rbee-preflight"
_VERSION = re.compile(r"^rbee (\d+)\.(\d+)\.(\d+)\S*$")
_NOT_FOUND_EXITS = (126, 127)


class SshPreflight:
    """Runs the preflight of a node spec over SSH."""

    def __init__(self, connector: SshConnector) -> None:
        self.connector = connector

    async def check(self, spec: NodeSpec, accept_new_host_key: bool = False) -> dict[str, Any]:
        """The preflight record of a node that passed; raises SshError otherwise."""
        return await asyncio.to_thread(self.check_blocking, spec, accept_new_host_key)

    def check_blocking(self, spec: NodeSpec, accept_new_host_key: bool = False) -> dict[str, Any]:
        """`check`, in the calling thread."""
        started = time.monotonic()
        with self.connector.session(spec, accept_new_host_key) as session:
            fingerprint = session.host_key_fingerprint
            latency_ms = _latency_ms(session)
            version = _rbee_version(session)
        return {
            "ok": True,
            "checked_at": utc_now(),
            "latency_ms": latency_ms,
            "rbee_version": version,
            "attempts": session.attempts,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "host_key_fingerprint": fingerprint,
        }


def _latency_ms(session: SshSession) -> float:
    """Median round trip of a trivial command, in milliseconds."""
    spec = session.spec
    samples = []
    for _ in range(LATENCY_PROBES):
        started = time.perf_counter()
        result = session.run(f"echo {_PROBE}")
        samples.append((time.perf_counter() - started) * 1000)
        if result.exited != 0 or result.stdout.strip() != _PROBE:
            raise SshError(
                422, "SSH_COMMAND_FAILED",
                f"{spec.ssh_user}@{spec.ssh_host} logs in but cannot run commands (exit "
                f"{result.exited}); give the user a working login shell", "command")
    return round(statistics.median(samples), 2)


def _rbee_version(session: SshSession) -> str:
    """The version of `<install_path>/bin/rbee` on the node, checked against the queen's."""
    spec = session.spec
    command = spec.rbee_command
    result = session.run(f"{shlex.quote(command)} --version")
    if result.exited in _NOT_FOUND_EXITS:
        raise SshError(
            422, "RBEE_NOT_INSTALLED",
            f"rbee is not installed at {spec.install_path} on {spec.ssh_host}: {command} is missing "
            f"or not executable. Install rbee {__version__} there (`python3 -m venv "
            f"{spec.install_path} && {spec.install_path}/bin/pip install rbee=={__version__}`, or "
            "pip install a wheel of this release), or pass --install-path of an existing "
            "installation, then run add-node again",
            "rbee", install_path=spec.install_path)
    match = _VERSION.match(result.stdout.strip())
    if result.exited != 0 or not match:
        raise SshError(
            422, "RBEE_BROKEN",
            f"`{command} --version` on {spec.ssh_host} exited {result.exited} without a version; "
            f"reinstall rbee {__version__} at {spec.install_path}",
            "rbee", install_path=spec.install_path)
    version = ".".join(match.groups())
    if not compatible(version, __version__):
        raise SshError(
            422, "RBEE_VERSION_MISMATCH",
            f"{spec.ssh_host} has rbee {version} at {spec.install_path}, the queen runs {__version__}: "
            f"install the same release there (`{spec.install_path}/bin/pip install "
            f"rbee=={__version__}`)",
            "rbee", node_version=version, queen_version=__version__)
    return version


def compatible(node_version: str, queen_version: str) -> bool:
    """Same major and minor release (patch releases interoperate)."""
    return node_version.split(".")[:2] == queen_version.split(".")[:2]
