"""Node registry: the SQLite store, input validation, and the SSH preflight against a real sshd."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from rbee import __version__
from rbee.cli.setup import SetupFailed, default_key, format_table
from rbee.common.errors import ApiError
from rbee.common.tunables import SshTimings, TunableError, load_ssh_timings
from rbee.queen.api import openapi
from rbee.queen.api.routes import add_routes
from rbee.queen.nodes.node_registry import Node, NodeExists, NodeRegistry, NodeSpec
from rbee.queen.nodes.node_spec_checks import NodeAdd
from rbee.queen.nodes.ssh import KnownHosts, SshConnector, SshError
from rbee.queen.nodes.ssh_preflight import SshPreflight, compatible
from rbee.testing.sshd import Sshd, generate_key

QUICK = SshTimings(connect_timeout_s=1, retries=0, backoff_initial_s=0.05, command_timeout_s=30)


def _spec(name: str = "gpu-1", **changes) -> NodeSpec:
    fields = {"name": name, "ssh_host": "127.0.0.1", "ssh_port": 22, "ssh_user": "root",
              "ssh_key": "/k", "install_path": "/opt/rbee", **changes}
    return NodeSpec(**fields)


def _node(name: str = "gpu-1", **changes) -> Node:
    return Node(_spec(name, **changes), "2026-11-22T00:00:00.000Z", {"ok": True, "latency_ms": 1.5})


# --- the store ---------------------------------------------------------------------------------

def test_add_get_list_remove(tmp_path: Path) -> None:
    registry = NodeRegistry(tmp_path / "nodes.sqlite")
    assert registry.add(_node("b")) is False
    registry.add(_node("a"))
    assert [n.spec.name for n in registry.all()] == ["a", "b"]
    assert registry.get("a") == _node("a")
    assert registry.remove("a") is True
    assert registry.remove("a") is False
    assert registry.get("a") is None


def test_duplicate_refused_unless_replace(tmp_path: Path) -> None:
    registry = NodeRegistry(tmp_path / "nodes.sqlite")
    registry.add(_node())
    with pytest.raises(NodeExists):
        registry.add(_node(install_path="/srv/rbee"))
    assert registry.add(_node(install_path="/srv/rbee"), replace=True) is True
    assert registry.get("gpu-1").spec.install_path == "/srv/rbee"


def test_survives_reopen_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "nodes.sqlite"
    NodeRegistry(path).add(_node())
    assert NodeRegistry(path).get("gpu-1") == _node()
    assert path.stat().st_mode & 0o777 == 0o600


def test_corrupt_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "nodes.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    registry = NodeRegistry(path)
    assert registry.all() == []
    assert len(list(tmp_path.glob("nodes.sqlite.corrupt-*"))) == 1


# --- validation --------------------------------------------------------------------------------

@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    key = tmp_path / "key"
    key.write_text("k")
    key.chmod(0o600)
    return key


def _body(key_file: Path, **changes) -> dict:
    return {"name": "Gpu-1", "ssh_host": "127.0.0.1", "ssh_user": "rbee", "ssh_key": str(key_file), **changes}


def test_a_node_body_fills_in_the_defaults(key_file: Path) -> None:
    spec = NodeAdd.parse(_body(key_file)).spec()
    assert (spec.name, spec.ssh_port, spec.install_path) == ("gpu-1", 22, "/opt/rbee")
    assert spec.rbee_command == "/opt/rbee/bin/rbee"


@pytest.mark.parametrize("changes", [
    {"name": "bad name"}, {"name": "-x"}, {"ssh_host": "a;b"}, {"ssh_port": 0}, {"ssh_port": "22"},
    {"ssh_user": "Root"}, {"ssh_user": "a b"}, {"ssh_user": None}, {"ssh_key": "key"},
    {"ssh_key": "/nonexistent/key"}, {"ssh_key": "/"}, {"install_path": "opt/rbee"},
    {"install_path": "/opt/../etc"}, {"install_path": "/opt/rb ee"}, {"install_path": "/opt/$(id)"},
])
def test_a_bad_node_body_is_refused_without_echoing_it(key_file: Path, changes: dict) -> None:
    with pytest.raises(ApiError) as caught:
        NodeAdd.parse(_body(key_file, **changes))
    assert caught.value.status == 400
    for value in changes.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in caught.value.message


def test_key_readable_by_others_is_refused(key_file: Path) -> None:
    key_file.chmod(0o644)
    with pytest.raises(ApiError, match="chmod 600"):
        NodeAdd.parse(_body(key_file))


def test_ssh_timings_from_environment() -> None:
    timings = load_ssh_timings({"RBEE_SSH_RETRIES": "0", "RBEE_SSH_BACKOFF_INITIAL_S": "0.1"})
    assert (timings.retries, timings.backoff_initial_s) == (0, 0.1)
    for bad in ({"RBEE_SSH_CONNECT_TIMEOUT_S": "0"}, {"RBEE_SSH_RETRIES": "-1"}, {"RBEE_SSH_RETRIES": "x"}):
        with pytest.raises(TunableError):
            load_ssh_timings(bad)


def test_version_compatibility() -> None:
    assert compatible("0.1.7", "0.1.0")
    assert not compatible("0.2.0", "0.1.0")
    assert not compatible("1.1.0", "0.1.0")


def test_openapi_lists_every_route_the_queen_serves() -> None:
    app = web.Application()
    add_routes(app)
    paths = openapi.document()["paths"]
    for route in app.router.routes():
        if route.method != "HEAD":
            assert route.method.lower() in paths[route.resource.canonical], route


# --- CLI helpers -------------------------------------------------------------------------------

def test_default_key_prefers_ed25519(tmp_path: Path) -> None:
    with pytest.raises(SetupFailed, match="--ssh-key"):
        default_key(tmp_path)
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_rsa").write_text("k")
    assert default_key(tmp_path).name == "id_rsa"
    (tmp_path / ".ssh" / "id_ed25519").write_text("k")
    assert default_key(tmp_path).name == "id_ed25519"


def test_format_table_aligns_columns() -> None:
    table = format_table([_node("a").to_wire(), _node("long-name").to_wire()]).splitlines()
    assert table[0].startswith("NAME ") and "LATENCY" in table[0]
    assert "root@127.0.0.1:22" in table[1] and "1.5 ms" in table[1]
    assert table[1].index("root@") == table[2].index("root@")


# --- preflight against a real sshd -------------------------------------------------------------

@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sshd")
    key = generate_key(root / "client_key")
    server = Sshd(root / "server", [key]).start()
    yield server, key, root
    assert server.stop() == [], "sshd connection processes outlived the preflight's connections"


def _install(root: Path, name: str, script: str | None = None) -> Path:
    prefix = root / name
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    rbee = prefix / "bin" / "rbee"
    if script is None:
        rbee.symlink_to(Path(sys.executable).with_name("rbee"))
    else:
        rbee.write_text(f"#!/bin/sh\n{script}\n")
        rbee.chmod(0o755)
    return prefix


def _preflight(root: Path, server: Sshd, timings: SshTimings = QUICK) -> SshPreflight:
    known = root / "known_hosts"
    known.write_text(server.known_hosts_line())
    return SshPreflight(SshConnector(KnownHosts(known), timings))


def _target(server: Sshd, key: Path, install: Path | str, port: int | None = None) -> NodeSpec:
    return NodeSpec("gpu-1", "127.0.0.1", port or server.port, server.user, str(key), str(install))


def test_preflight_passes_and_measures(sshd) -> None:
    server, key, root = sshd
    result = _preflight(root, server).check_blocking(_target(server, key, _install(root, "ok")))
    assert result["ok"] and result["rbee_version"] == __version__ and result["attempts"] == 1
    assert result["latency_ms"] > 0 and result["host_key_fingerprint"].startswith("SHA256:")


@pytest.mark.parametrize(("script", "code"), [
    ("echo rbee 9.0.0", "RBEE_VERSION_MISMATCH"),
    ("exit 3", "RBEE_BROKEN"),
    ("echo something else", "RBEE_BROKEN"),
])
def test_preflight_refuses_a_wrong_rbee(sshd, script: str, code: str) -> None:
    server, key, root = sshd
    install = _install(root, f"wrong-{abs(hash(script))}", script)
    with pytest.raises(SshError) as caught:
        _preflight(root, server).check_blocking(_target(server, key, install))
    assert (caught.value.status, caught.value.code) == (422, code)


def test_unusable_key_is_refused_before_connecting(sshd, tmp_path: Path) -> None:
    server, _, root = sshd
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key")
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret-phrase", "-f", str(locked)],
                   check=True)
    for key, reason in ((garbage, "not an OpenSSH private key"), (locked, "passphrase")):
        with pytest.raises(SshError, match=reason) as caught:
            _preflight(root, server).check_blocking(_target(server, key, "/opt/rbee"))
        assert caught.value.code == "SSH_KEY_UNUSABLE"


def test_silent_listener_is_ssh_timeout_after_retries(sshd) -> None:
    server, key, root = sshd
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        timings = SshTimings(connect_timeout_s=1, retries=1, backoff_initial_s=0.05)
        with pytest.raises(SshError) as caught:
            _preflight(root, server, timings).check_blocking(
                _target(server, key, "/opt/rbee", port=silent.getsockname()[1]))
    assert (caught.value.status, caught.value.code) == (504, "SSH_TIMEOUT")
    assert caught.value.details["attempts"] == 2


def test_command_timeout_is_ssh_timeout(sshd) -> None:
    server, key, root = sshd
    install = _install(root, "slow", "sleep 2")
    timings = SshTimings(connect_timeout_s=2, retries=0, command_timeout_s=1)
    with pytest.raises(SshError) as caught:
        _preflight(root, server, timings).check_blocking(_target(server, key, install))
    assert caught.value.code == "SSH_TIMEOUT" and caught.value.details["stage"] == "command"
