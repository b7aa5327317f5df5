"""Several test hosts on one machine: Linux network namespaces joined by a bridge.

A "switch" namespace holds a bridge; each host namespace holds `eth0`, one end of a veth pair with
the host's address in a /24 picked inside 10.0.0.0/8; the other end is a port of the bridge. Both
ends are created inside their namespaces, so no test interface ever exists in the root namespace.

Safety (TESTING.md): before any address exists, an `unreachable` guard route for the subnet is
added in the root namespace and checked with `ip route get`, so a client that forgets
`ip netns exec` fails at once instead of sending traffic out of the machine.

Everything is named after the PID of the owning process (namespaces `rbt<pid>-<tag>-<host>`,
guard routes with protocol 177 and metric <pid>), so `remove_leftovers` can clear what a crashed
run left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from rbee.testing.cluster import alive, wait_until

PREFIX = "rbt"
GUARD_PROTO = 177
SUBNET_SECOND_OCTETS = (200, 250)
SUBNET_ATTEMPTS = 64
BRIDGE = "br0"
HOST_IFNAME = "eth0"
KILL_GRACE_S = 1.0
LINK_TIMEOUT_S = 5.0
CLIENT_START_S = 15.0
"""Extra seconds an in-namespace HTTP client may take to start, on top of its own timeout."""

_HOST_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
"""At most 12 characters, so the bridge port `to-<name>` fits Linux's 15-character interface names."""
_OWNED_NAMESPACE = re.compile(rf"^{PREFIX}(\d+)-[0-9a-f]{{4}}-[a-z0-9]+$")
_NO_ROUTE = "No route to host"
_CLIENT = """
import http.client, json, sys
from rbee.testing.http_client import request
call = json.loads(sys.argv[1])  # the keyword arguments of request()
try:
    answer = request(**call)
    print(json.dumps([answer.status, json.loads(answer.body or b"{}")]))
except (OSError, ValueError, http.client.HTTPException):
    print("[0, {}]")
"""
"""Run by `Host` inside a namespace: one request, printed as [status, JSON body] or [0, {}]."""


class NetnsError(RuntimeError):
    """The harness could not build or tear down a test network; `code` is UPPER_SNAKE."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command is missing: install iproute2 (apt-get install iproute2)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    if check and result.returncode != 0:
        raise NetnsError("IP_COMMAND_FAILED", f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _ip_json(*args: str) -> list[dict[str, Any]]:
    return json.loads(_ip("-j", *args).stdout or "[]")


def namespaces() -> list[str]:
    """Names of every named network namespace."""
    return [entry["name"] for entry in _ip_json("netns", "list")]


def namespace_pids(netns: str) -> list[int]:
    """PIDs of the processes inside `netns` (none when it does not exist)."""
    result = _ip("netns", "pids", netns, check=False)
    return [int(pid) for pid in result.stdout.split()] if result.returncode == 0 else []


def kill_pids(pids: Sequence[int], grace: float = KILL_GRACE_S) -> None:
    """SIGTERM each PID, SIGKILL those still alive after `grace` seconds, wait until all are gone."""
    for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        for pid in pids:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
        if wait_until(lambda: not any(alive(pid) for pid in pids), wait):
            return
    raise NetnsError("PROCESS_SURVIVED", f"still alive after SIGKILL: {[p for p in pids if alive(p)]}")


def _guard_routes() -> list[dict[str, Any]]:
    return _ip_json("-4", "route", "show", "type", "unreachable", "proto", str(GUARD_PROTO))


def _delete_guard(subnet: str, owner: int) -> None:
    _ip("route", "del", "unreachable", subnet, "proto", str(GUARD_PROTO), "metric", str(owner), check=False)


def remove_leftovers() -> list[str]:
    """Remove namespaces and guard routes of this harness whose owning process is gone
    (killing any process still inside them by PID); return what was removed."""
    removed = []
    for name in namespaces():
        match = _OWNED_NAMESPACE.match(name)
        if match and not psutil.pid_exists(int(match.group(1))):
            kill_pids(namespace_pids(name))
            _ip("netns", "del", name)
            removed.append(f"namespace {name}")
    for route in _guard_routes():
        owner = route.get("metric", 0)
        if not psutil.pid_exists(owner):
            _delete_guard(route["dst"], owner)
            removed.append(f"guard route {route['dst']} of PID {owner}")
    return removed


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network a route (any table) or an address of the root namespace covers."""
    used = [
        ipaddress.ip_network(route["dst"], strict=False)
        for route in _ip_json("-4", "route", "show", "table", "all")
        if route.get("dst", "default") != "default"
    ]
    for link in _ip_json("-4", "addr", "show"):
        for info in link.get("addr_info", []):
            used.append(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}").network)
    return used


def _is_own_guard(route: dict[str, Any], subnet: ipaddress.IPv4Network, owner: int) -> bool:
    return (route.get("type") == "unreachable" and route.get("dst") == str(subnet)
            and route.get("metric") == owner)


def _routes_overlapping(subnet: ipaddress.IPv4Network, owner: int) -> list[dict[str, Any]]:
    """Routes of the root namespace that overlap `subnet`, other than our own guard."""
    return [
        route for route in _ip_json("-4", "route", "show", "table", "all")
        if route.get("dst", "default") != "default"
        and ipaddress.ip_network(route["dst"], strict=False).overlaps(subnet)
        and not _is_own_guard(route, subnet, owner)
    ]


def _guard_is_effective(subnet: ipaddress.IPv4Network) -> bool:
    """True when the root namespace answers 'No route to host' for the subnet's first and last hosts."""
    probes = (subnet[1], subnet[-2])
    for address in probes:
        result = _ip("route", "get", str(address), check=False)
        if result.returncode == 0 or _NO_ROUTE not in result.stderr:
            return False
    return True


@dataclass
class Host:
    """One test host: a network namespace with one address on the test subnet."""

    name: str
    netns: str
    address: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def switch_port(self) -> str:
        """The bridge port (in the switch namespace) that carries this host's link."""
        return f"to-{self.name}"

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` prefixed so that it runs inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start `argv` inside the namespace; the Popen's PID is the process itself."""
        process = subprocess.Popen(self.command(argv), **kwargs)
        self.processes.append(process)
        return process

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """Run `argv` inside the namespace to completion."""
        return subprocess.run(self.command(argv), **kwargs)

    def http_json(
        self, url: str, timeout: float = 2.0, headers: dict[str, str] | None = None
    ) -> tuple[int, dict]:
        """GET `url` from inside the namespace: (status, JSON body); (0, {}) when nothing answers."""
        return self._http("GET", url, None, headers or {}, timeout)

    def http_post_json(
        self, url: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 2.0
    ) -> tuple[int, dict]:
        """POST `body` as JSON from inside the namespace; (0, {}) when nothing answers."""
        return self._http("POST", url, body, headers or {}, timeout)

    def _http(
        self, method: str, url: str, body: Any, headers: dict[str, str], timeout: float
    ) -> tuple[int, dict]:
        call = json.dumps({"method": method, "url": url, "body": body, "headers": headers,
                           "timeout": timeout})
        try:
            result = self.run([sys.executable, "-c", _CLIENT, call], capture_output=True, text=True,
                              timeout=timeout + CLIENT_START_S)
        except subprocess.TimeoutExpired:
            return 0, {}
        if result.returncode != 0:
            raise NetnsError("CLIENT_FAILED", f"HTTP client in {self.netns} failed: {result.stderr.strip()}")
        status, answer = json.loads(result.stdout)
        return status, answer


@dataclass
class TestNetwork:
    """A /24 of test hosts on one bridge; `start` it, `add_host`, cut links, `stop` it.

    Usable as a context manager: `with TestNetwork() as net: ...` stops it on the way out.
    """

    __test__ = False

    owner: int = field(default_factory=os.getpid)
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: ipaddress.IPv4Network | None = None
    hosts: dict[str, Host] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    guarded: bool = False

    @property
    def switch_ns(self) -> str:
        """The namespace that holds the bridge."""
        return self.namespace_name("sw")

    def namespace_name(self, suffix: str) -> str:
        """The name of this network's namespace for host `suffix` (`sw`: the switch)."""
        return f"{PREFIX}{self.owner}-{self.tag}-{suffix}"

    def start(self) -> TestNetwork:
        """Clear leftovers, install and verify the guard route, create the switch and its bridge."""
        reason = unavailable_reason()
        if reason is not None:
            raise NetnsError("NETNS_UNAVAILABLE", reason)
        try:
            remove_leftovers()
            self._install_guard()
            self._add_namespace(self.switch_ns)
            _ip("-n", self.switch_ns, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0",
                "forward_delay", "0")
            _ip("-n", self.switch_ns, "link", "set", BRIDGE, "up")
        except BaseException:
            self.stop()
            raise
        return self

    def _install_guard(self) -> None:
        """Add `unreachable <subnet>` to the root namespace on a /24 no route or address uses."""
        rng = random.SystemRandom()
        for _ in range(SUBNET_ATTEMPTS):
            subnet = ipaddress.IPv4Network(
                f"10.{rng.randint(*SUBNET_SECOND_OCTETS)}.{rng.randint(0, 255)}.0/24")
            if any(subnet.overlaps(used) for used in _networks_in_use()):
                continue
            added = _ip("route", "add", "unreachable", str(subnet), "proto", str(GUARD_PROTO),
                        "metric", str(self.owner), check=False)
            if added.returncode != 0:
                continue
            self.subnet, self.guarded = subnet, True
            if _routes_overlapping(subnet, self.owner):
                _delete_guard(str(subnet), self.owner)
                self.subnet, self.guarded = None, False
                continue
            if not _guard_is_effective(subnet):
                raise NetnsError("GUARD_ROUTE_INEFFECTIVE",
                                 f"`ip route get` does not answer unreachable for {subnet}")
            return
        raise NetnsError("NO_FREE_SUBNET", f"no unused /24 found in 10.{SUBNET_SECOND_OCTETS}.x.0")

    def _add_namespace(self, name: str) -> None:
        self.created.append(name)
        _ip("netns", "add", name)

    def add_host(self, name: str) -> Host:
        """A new host namespace on the next address, linked to the bridge and up."""
        if self.subnet is None or self.switch_ns not in self.created:
            raise NetnsError("NETWORK_NOT_STARTED", "call start() before add_host()")
        if not _HOST_NAME.match(name) or name == "sw" or name in self.hosts:
            raise NetnsError("BAD_HOST_NAME", f"host name {name!r}: use 1-12 of a-z 0-9, starting "
                             "with a letter, not 'sw' and not a name already in the network")
        if len(self.hosts) + 2 >= self.subnet.num_addresses:
            raise NetnsError("SUBNET_FULL", f"no address left in {self.subnet}")
        host = Host(name, self.namespace_name(name), str(self.subnet[len(self.hosts) + 1]))
        self._add_namespace(host.netns)
        self.hosts[name] = host
        _ip("-n", host.netns, "link", "add", HOST_IFNAME, "type", "veth",
            "peer", "name", host.switch_port, "netns", self.switch_ns)
        _ip("-n", self.switch_ns, "link", "set", host.switch_port, "master", BRIDGE, "up")
        _ip("-n", host.netns, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", HOST_IFNAME)
        _ip("-n", host.netns, "link", "set", "lo", "up")
        _ip("-n", host.netns, "link", "set", HOST_IFNAME, "up")
        self._wait_link(host, up=True)
        return host

    def link_down(self, host: Host) -> None:
        """Cut the host's link at the switch (the host keeps its address); returns once it is down."""
        _ip("-n", self.switch_ns, "link", "set", host.switch_port, "down")
        self._wait_link(host, up=False)

    def link_up(self, host: Host) -> None:
        """Restore the host's link; returns once the host has carrier and the port forwards."""
        _ip("-n", self.switch_ns, "link", "set", host.switch_port, "up")
        self._wait_link(host, up=True)

    def link_is_up(self, host: Host) -> bool:
        """True when the host's `eth0` has carrier and its bridge port forwards frames."""
        (inside,) = _ip_json("-n", host.netns, "link", "show", "dev", HOST_IFNAME)
        (port,) = _ip_json("-d", "-n", self.switch_ns, "link", "show", "dev", host.switch_port)
        state = port.get("linkinfo", {}).get("info_slave_data", {}).get("state")
        return inside["operstate"] == "UP" and state == "forwarding"

    def _wait_link(self, host: Host, up: bool) -> None:
        if not wait_until(lambda: self.link_is_up(host) == up, LINK_TIMEOUT_S):
            raise NetnsError("LINK_STATE_TIMEOUT",
                             f"link of {host.name} not {'up' if up else 'down'} after {LINK_TIMEOUT_S}s")

    def stop(self) -> list[int]:
        """Kill every process left in the namespaces by PID, delete the namespaces and the guard
        route; return the PIDs that had to be killed. Safe to call twice or after a failed start."""
        leftovers = sorted({pid for name in self.created for pid in namespace_pids(name)})
        kill_pids(leftovers)
        for host in self.hosts.values():
            for process in host.processes:
                process.poll()
        failed = []
        for name in reversed(self.created):
            if _ip("netns", "del", name, check=False).returncode != 0 and name in namespaces():
                failed.append(f"namespace {name}")
        if self.guarded and self.subnet is not None:
            _delete_guard(str(self.subnet), self.owner)
            if any(_is_own_guard(route, self.subnet, self.owner) for route in _guard_routes()):
                failed.append(f"guard route {self.subnet}")
        self.created, self.hosts, self.guarded = [], {}, False
        if failed:
            raise NetnsError("TEARDOWN_FAILED", f"could not remove {', '.join(failed)}; see docs/testing.md")
        return leftovers

    def __enter__(self) -> TestNetwork:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
