"""The several-hosts harness on real network namespaces: guard route, reachability, link cuts,
cleanup by PID, leftovers of a crashed run, and a real hive inside a host namespace."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from rbee.common.secrets import generate_token, write_token_file
from rbee.testing.cluster import Daemon, alive, wait_until
from rbee.testing.netns import (
    GUARD_PROTO,
    Host,
    NetnsError,
    TestNetwork,
    namespace_pids,
    namespaces,
    remove_leftovers,
    unavailable_reason,
)

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"network namespaces unavailable: {REASON}")

HTTP_PORT = 8000
HIVE_PORT = 9200
CLIENT_TIMEOUT_S = 1.0
CLIENT_START_ALLOWANCE_S = 4.0


def own_guard_routes(net: TestNetwork) -> list[str]:
    """Destinations of the guard routes this network owns, as the root namespace lists them."""
    result = subprocess.run(["ip", "-j", "route", "show", "type", "unreachable", "proto", str(GUARD_PROTO)],
                            capture_output=True, text=True, check=True)
    return [r["dst"] for r in json.loads(result.stdout or "[]") if r.get("metric") == net.owner]


def route_get(address: str) -> subprocess.CompletedProcess:
    """`ip route get` in the root namespace (a routing lookup, no traffic)."""
    return subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)


def with_prefix(net: TestNetwork) -> list[str]:
    """Namespaces that carry this network's name prefix."""
    return [name for name in namespaces() if name.startswith(net.namespace_name(""))]


@pytest.fixture
def net() -> Iterator[TestNetwork]:
    """A started network; every test must stop what it started, so nothing is left to kill."""
    network = TestNetwork().start()
    yield network
    assert network.stop() == [], "a process was left running inside a namespace"


@pytest.fixture
def web_server(net: TestNetwork, tmp_path: Path) -> Iterator[tuple[Host, Host, str, Path]]:
    """Hosts a and b; b serves `health.json` with `python -m http.server` bound to its own address."""
    a, b = net.add_host("a"), net.add_host("b")
    (tmp_path / "health.json").write_text('{"ok": true}')
    log = tmp_path / "http.log"
    with log.open("wb") as sink:
        server = b.popen([sys.executable, "-m", "http.server", "--bind", b.address, str(HTTP_PORT),
                          "--directory", str(tmp_path)], stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://{b.address}:{HTTP_PORT}/health.json"
    try:
        assert wait_until(lambda: a.http_json(url)[0] == 200, 15.0), log.read_text()
        yield a, b, url, log
    finally:
        server.terminate()
        server.wait(10)


def test_guard_route_makes_the_subnet_unreachable_from_the_root_namespace_until_stop():
    with TestNetwork() as net:
        assert own_guard_routes(net) == [str(net.subnet)]
        assert "No route to host" in route_get(str(net.subnet[9])).stderr
        host = net.add_host("a")
        answer = route_get(host.address)
        assert answer.returncode != 0 and "No route to host" in answer.stderr, answer
        assert sorted(with_prefix(net)) == sorted([net.switch_ns, host.netns])
    assert own_guard_routes(net) == []
    assert with_prefix(net) == []
    assert "No route to host" not in route_get(host.address).stderr


def test_bad_host_names_and_hosts_before_start_are_refused_with_a_code(net):
    for name in ("Queen", "sw", "a-b", "x" * 13):
        with pytest.raises(NetnsError) as refused:
            net.add_host(name)
        assert refused.value.code == "BAD_HOST_NAME"
    net.add_host("a")
    with pytest.raises(NetnsError) as duplicate:
        net.add_host("a")
    assert duplicate.value.code == "BAD_HOST_NAME"
    with pytest.raises(NetnsError) as early:
        TestNetwork().add_host("a")
    assert early.value.code == "NETWORK_NOT_STARTED"


def test_a_host_reaches_a_server_on_another_host_and_not_through_its_own_loopback(web_server):
    a, b, url, log = web_server
    assert a.http_json(url) == (200, {"ok": True})
    assert f"{a.address} - - " in log.read_text(), "the request did not come from host a's address"
    assert a.http_json(f"http://127.0.0.1:{HTTP_PORT}/health.json") == (0, {})


def test_a_cut_link_stops_traffic_within_the_timeout_and_restoring_it_brings_traffic_back(net, web_server):
    a, b, url, _ = web_server
    net.link_down(b)
    started = time.monotonic()
    assert a.http_json(url, timeout=CLIENT_TIMEOUT_S) == (0, {})
    assert time.monotonic() - started < CLIENT_TIMEOUT_S + CLIENT_START_ALLOWANCE_S
    address = b.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"], capture_output=True, text=True)
    assert f"inet {b.address}/24" in address.stdout, "host b lost its address with its link"
    net.link_up(b)
    assert a.http_json(url, timeout=CLIENT_TIMEOUT_S) == (200, {"ok": True})


def test_stop_kills_processes_left_in_namespaces_by_pid_even_when_they_ignore_sigterm():
    net = TestNetwork().start()
    host = net.add_host("a")
    plain = host.popen(["sleep", "300"])
    stubborn = host.popen([sys.executable, "-c", "import signal, time; "
                           "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
                           "time.sleep(300)"], stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline() == "ready\n"
    assert psutil.Process(plain.pid).name() == "sleep", "the Popen's PID is not the process itself"
    assert sorted(net.stop()) == sorted([plain.pid, stubborn.pid])
    assert stubborn.returncode == -signal.SIGKILL and plain.returncode == -signal.SIGTERM
    assert not alive(plain.pid) and not alive(stubborn.pid)
    assert with_prefix(net) == [] and own_guard_routes(net) == []
    assert net.stop() == []


def test_leftovers_of_a_crashed_run_are_removed_and_their_processes_killed():
    crashed = subprocess.Popen([sys.executable, "-c", (
        "from rbee.testing.netns import TestNetwork\n"
        "net = TestNetwork().start()\n"
        "host = net.add_host('a')\n"
        "orphan = host.popen(['sleep', '300'])\n"
        "print(net.owner, net.tag, net.subnet, orphan.pid, flush=True)\n"
        "import time; time.sleep(300)\n")], stdout=subprocess.PIPE, text=True)
    owner, tag, subnet, orphan = crashed.stdout.readline().split()
    crashed.kill()
    crashed.wait(10)
    ghost = TestNetwork(owner=int(owner), tag=tag)
    assert len(with_prefix(ghost)) == 2 and alive(int(orphan))
    removed = remove_leftovers()
    assert f"guard route {subnet} of PID {owner}" in removed
    assert f"namespace {ghost.switch_ns}" in removed and f"namespace {ghost.namespace_name('a')}" in removed
    assert with_prefix(ghost) == [] and own_guard_routes(ghost) == []
    assert wait_until(lambda: not alive(int(orphan)), 5.0)


def test_a_hive_runs_inside_a_host_namespace_and_answers_another_host(net, tmp_path):
    queen, hive_host = net.add_host("queen"), net.add_host("hive")
    token_file = tmp_path / "hive-token"
    token = generate_token()
    write_token_file(token_file, token)
    assert token_file.stat().st_mode & 0o777 == 0o600
    daemon = Daemon(
        ["hive", "--host", hive_host.address, "--port", str(HIVE_PORT), "--data-dir", str(tmp_path / "data"),
         "--worker-port-start", str(HIVE_PORT + 1), "--token-file", str(token_file)],
        f"http://{hive_host.address}:{HIVE_PORT}", "/v1/health", tmp_path / "hive.log",
        prefix=hive_host.command([]), probe=queen.http_json,
    ).start()
    try:
        daemon.wait_healthy(30.0)
        assert "hive" in psutil.Process(daemon.pid).cmdline(), "the daemon's PID is not the hive itself"
        assert daemon.pid in namespace_pids(hive_host.netns)
        stop_url = f"{daemon.base_url}/v1/workers/stop"
        status, body = queen.http_post_json(stop_url, {"worker_id": "nobody"})
        assert status == 401 and body["error"]["code"] == "MISSING_API_KEY"
        status, body = queen.http_post_json(stop_url, {"worker_id": "nobody"},
                                            headers={"Authorization": f"Bearer {token}"})
        assert status not in (0, 401), (status, body)
    finally:
        assert daemon.stop() == []
    assert not alive(daemon.pid)
