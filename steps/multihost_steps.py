"""Steps of the several-hosts feature: a queen host and node hosts in network namespaces.

Every daemon and client runs inside a namespace of the scenario's TestNetwork; the network is
registered first in `context.daemons`, so it is stopped last and reports (as orphans) any
process still alive in a namespace once the queen and the sshds have stopped.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from functools import partial

from behave import given, then, when

from rbee import __version__
from rbee.testing.cluster import Daemon, wait_until
from rbee.testing.netns import Host, TestNetwork, namespace_pids
from rbee.testing.sshd import Sshd, generate_key
from steps.common import tiny_ref
from steps.node_steps import _install

QUEEN_PORT = 8080
SSH_PORT = 22
STALE_WAIT_S = 20.0
CLI_TIMEOUT_S = 120


def _queen_host(context) -> Host:
    return context.net.hosts["queen"]


def _rbee(context, *args: str) -> subprocess.CompletedProcess:
    """Run `rbee <args>` on the queen host against the queen, with its token."""
    argv = [sys.executable, "-m", "rbee", *args, "--queen", context.queen_url,
            "--token-file", context.token_flags["--token-file"]]
    started = time.monotonic()
    result = _queen_host(context).run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    context.elapsed = time.monotonic() - started
    context.result = result
    return result


def _queen_get(context, path: str) -> dict:
    headers = {"Authorization": f"Bearer {context.tokens['queen']}"}
    status, body = _queen_host(context).http_json(f"{context.queen_url}{path}", headers=headers)
    assert status == 200, (status, body)
    return body


@given('a test network with a queen host and the node hosts "{first}" and "{second}"')
def test_network(context, first: str, second: str) -> None:
    context.net = TestNetwork()
    context.daemons.append(context.net)
    context.net.start()
    for name in ("queen", first, second):
        context.net.add_host(name)
    context.node_names = (first, second)


@given("each node host runs an SSH server that accepts the queen's key, with rbee installed")
def node_sshds(context) -> None:
    context.ssh_key = generate_key(context.workdir / "keys" / "id_ed25519")
    known = context.workdir / "data" / "ssh" / "known_hosts"
    known.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    context.node_sshd = {}
    for name in context.node_names:
        host = context.net.hosts[name]
        server = Sshd(context.workdir / f"sshd-{name}", [context.ssh_key], port=SSH_PORT,
                      address=host.address, prefix=host.command([]))
        context.daemons.append(server)
        server.start()
        context.node_sshd[name] = server
        with known.open("a") as lines:
            lines.write(server.known_hosts_line())
    context.install_path = _install(context, "install")


@given("a queen on the queen host with those tokens and no local hive")
def queen_on_host(context) -> None:
    host = _queen_host(context)
    context.queen_url = f"http://{host.address}:{QUEEN_PORT}"
    tokens = [item for pair in context.token_flags.items() for item in pair]
    args = ["queen", "--host", host.address, "--port", str(QUEEN_PORT), "--no-local-hive",
            "--data-dir", str(context.workdir / "data"), *tokens]
    queen = Daemon(args, context.queen_url, "/health", context.workdir / "queen.log",
                   prefix=host.command([]), probe=partial(host.http_json, timeout=2.0))
    context.daemons.append(queen)
    queen.start(env=context.env)
    queen.wait_healthy(60)
    context.queen = queen


@when('I add the nodes "{first}" and "{second}" with rbee setup from the queen host')
def add_nodes(context, first: str, second: str) -> None:
    context.add_seconds = {}
    for name in (first, second):
        host = context.net.hosts[name]
        result = _rbee(context, "setup", "add-node", "--name", name, "--ssh-host", host.address,
                       "--ssh-port", str(SSH_PORT), "--ssh-user", context.node_sshd[name].user,
                       "--ssh-key", str(context.ssh_key), "--install-path", str(context.install_path),
                       "--hive-data-dir", str(context.workdir / f"hive-{name}"))
        assert result.returncode == 0, result.stderr
        assert f"added node {name}" in result.stdout, result.stdout
        context.add_seconds[name] = context.elapsed


@then('rbee setup list-nodes on the queen host lists "{first}" and "{second}" with their latency')
def list_nodes(context, first: str, second: str) -> None:
    result = _rbee(context, "setup", "list-nodes")
    assert result.returncode == 0, result.stderr
    for name in (first, second):
        line = next((row for row in result.stdout.splitlines() if row.startswith(f"{name} ")), "")
        assert context.net.hosts[name].address in line and " ms" in line, result.stdout


def _infer(context, node: str | None) -> subprocess.CompletedProcess:
    args = ["infer", "--model", tiny_ref(context), "--prompt", "Once", "--max-tokens", "8",
            "--ignore-eos", "--stats"]
    return _rbee(context, *args, *(["--node", node] if node else []))


def _served_by(context, node: str) -> None:
    result = context.result
    assert result.returncode == 0, result.stderr
    # the tiny model's random tokens may all be whitespace: count them from the stats line instead
    assert "[8 tokens, stop: max_tokens" in result.stderr, result.stderr
    assert f"node {node}," in result.stderr, result.stderr


@when('I run rbee infer on node "{node}" from the queen host')
def infer_on(context, node: str) -> None:
    _infer(context, node)


@then('it streams tokens served by node "{node}"')
def streamed_by(context, node: str) -> None:
    _served_by(context, node)


@then("the queen lists a serving worker on the hive of each node at that node's address")
def workers_on_each_node(context) -> None:
    workers = _queen_get(context, "/v2/workers/list")["workers"]
    for name in context.node_names:
        address = context.net.hosts[name].address
        mine = [w for w in workers if w["hive_url"].startswith(f"http://{address}:")]
        assert mine and all(w["url"].startswith(f"http://{address}:") for w in mine), workers
        assert any(w["state"] in ("idle", "busy") for w in mine), workers


@then("rbee setup list-nodes --json shows each node's hive preflight: rbee's version, a usable CPU backend "
      "and its RAM")
def hive_preflights(context) -> None:
    result = _rbee(context, "setup", "list-nodes", "--json")
    assert result.returncode == 0, result.stderr
    nodes = {node["name"]: node for node in json.loads(result.stdout)}
    for name in context.node_names:
        hive = nodes[name]["hive"]
        assert hive is not None and hive["version"] == __version__, nodes[name]
        assert hive["hive_url"] == f"http://{context.net.hosts[name].address}:9200", hive
        assert any(b["name"] == "cpu" and b["available"] for b in hive["backends"]), hive["backends"]
        assert hive["resources"]["ram_total_bytes"] > 0, hive["resources"]


@then("each node's hive was given its own node key for the queen, refused there on the inference routes")
def node_keys_of_hives(context) -> None:
    keys = {}
    for name in context.node_names:
        path = context.workdir / f"hive-{name}" / "tokens" / "queen.token"
        assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)
        keys[name] = path.read_text().strip()
        assert keys[name] != context.tokens["queen"], name
        status, body = _queen_host(context).http_json(
            f"{context.queen_url}/v1/models", headers={"Authorization": f"Bearer {keys[name]}"})
        assert status == 403 and body["error"]["code"] == "FORBIDDEN_SCOPE", (status, body)
    assert len(set(keys.values())) == len(keys), "two nodes share a key"
    listed = {key["name"]: key for key in _queen_get(context, "/v2/keys")["keys"]}
    for name, secret in keys.items():
        entry = listed[f"node-{name}"]
        assert entry["scopes"] == ["node"] and entry["revoked_at"] is None, entry
        assert entry["fingerprint"] == hashlib.sha256(secret.encode()).hexdigest()[:6], entry


@given('the nodes "{first}" and "{second}" are added and each has served an inference')
def nodes_serving(context, first: str, second: str) -> None:
    add_nodes(context, first, second)
    for name in (first, second):
        _infer(context, name)
        _served_by(context, name)


def _hive_stale(context, node: str) -> bool | None:
    address = context.net.hosts[node].address
    hives = _queen_get(context, "/v2/workers/list")["hives"]
    hive = next((h for h in hives if h["hive_url"].startswith(f"http://{address}:")), None)
    return None if hive is None else hive["stale"]


@when('the link of node host "{node}" is cut')
def cut_link(context, node: str) -> None:
    context.net.link_down(context.net.hosts[node])
    context.cut_at = time.monotonic()


@when('the link of node host "{node}" comes back')
def restore_link(context, node: str) -> None:
    context.net.link_up(context.net.hosts[node])
    context.restored_at = time.monotonic()


@then('the queen marks the hive of "{node}" stale')
def marked_stale(context, node: str) -> None:
    assert wait_until(lambda: _hive_stale(context, node) is True, STALE_WAIT_S, 0.1), "never stale"
    print(f"    {node} marked stale {time.monotonic() - context.cut_at:.2f} s after its link was cut")


@then('the queen marks the hive of "{node}" fresh again')
def marked_fresh(context, node: str) -> None:
    assert wait_until(lambda: _hive_stale(context, node) is False, STALE_WAIT_S, 0.1), "still stale"
    print(f"    {node} fresh {time.monotonic() - context.restored_at:.2f} s after its link came back")


@then('rbee infer without a node from the queen host is served by node "{node}"')
def infer_anywhere(context, node: str) -> None:
    _infer(context, None)
    _served_by(context, node)
    print(f"    served by {node} in {context.elapsed:.2f} s")


@then('rbee infer on node "{node}" from the queen host fails with "{code}"')
def infer_fails(context, node: str, code: str) -> None:
    result = _infer(context, node)
    assert result.returncode == 1 and code in result.stderr, (result.returncode, result.stderr)


@then('rbee infer on node "{node}" from the queen host is served by node "{served}"')
def infer_on_served(context, node: str, served: str) -> None:
    _infer(context, node)
    _served_by(context, served)


@then("no rbee process is left on either node host")
def nothing_left(context) -> None:
    for name in context.node_names:
        host = context.net.hosts[name]
        sshd_pid = context.node_sshd[name].process.pid
        left = [pid for pid in namespace_pids(host.netns) if pid != sshd_pid]
        assert not left, f"processes left on {name}: {left}"
