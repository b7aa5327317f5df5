"""Steps about the node registry: `rbee setup` against a real sshd on a loopback port."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from behave import given, then, when

from rbee import __version__
from rbee.common.ports import free_port
from rbee.testing.cluster import queen_daemon
from rbee.testing.http_client import request
from rbee.testing.sshd import Sshd, generate_key
from rbee.testing.tcp_relay import SilentListener
from steps.auth_steps import _bearer
from steps.cluster_steps import LONG_CONTEXT
from steps.common import started

ADD = "/v2/registry/beehives/add"
REMOVE = "/v2/registry/beehives/remove"
LIST = "/v2/registry/beehives/list"
TIMEOUT_SLACK_S = 2.0
"""How much longer than its timeouts a request that waited them out may take."""


def _install(context, name: str) -> Path:
    """A real install prefix: `<dir>/bin/rbee` runs this checkout's rbee."""
    prefix = context.workdir / name
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    (prefix / "bin" / "rbee").symlink_to(Path(sys.executable).with_name("rbee"))
    return prefix


def _known_hosts(context) -> Path:
    path = context.workdir / "data" / "ssh" / "known_hosts"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _setup(context, *args: str) -> None:
    token = ["--token-file", context.token_flags["--token-file"]]
    started_at = time.monotonic()
    context.result = subprocess.run(
        [sys.executable, "-m", "rbee", "setup", *args, "--queen", context.queen_url, *token],
        capture_output=True, text=True, timeout=180, check=False,
    )
    context.elapsed = time.monotonic() - started_at


@given("an SSH server on a free loopback port that accepts my test key")
def ssh_server(context) -> None:
    keys = context.workdir / "keys"
    context.ssh_key = generate_key(keys / "id_ed25519")
    context.stranger_key = generate_key(keys / "stranger")
    context.sshd = Sshd(context.workdir / "sshd", [context.ssh_key])
    context.daemons.append(context.sshd)
    context.sshd.start()


@given("rbee is installed on that server at a test install path")
def rbee_installed(context) -> None:
    context.install_path = _install(context, "install")


@given("the queen knows the SSH server's host key")
def queen_knows_key(context) -> None:
    _known_hosts(context).write_text(context.sshd.known_hosts_line())


@given("the queen's known_hosts file holds another server's key only")
def other_key_only(context) -> None:
    other = generate_key(context.workdir / "keys" / "other_host_key")
    key_type, key = Path(f"{other}.pub").read_text().split()[:2]
    _known_hosts(context).write_text(f"[127.0.0.1]:{free_port()} {key_type} {key}\n")


def _add(context, name: str, port: int | None = None, key: Path | None = None,
         install: Path | str | None = None, flags: tuple[str, ...] = ()) -> None:
    port = port or context.sshd.port
    key = key or context.ssh_key
    install = str(install or context.install_path)
    context.add_body = {
        "name": name, "ssh_host": "127.0.0.1", "ssh_port": port, "ssh_user": context.sshd.user,
        "ssh_key": str(key), "install_path": install, "update": "--update" in flags,
        "accept_new_host_key": "--accept-new-host-key" in flags,
    }
    _setup(context, "add-node", "--name", name, "--ssh-host", "127.0.0.1", "--ssh-port", str(port),
           "--ssh-user", context.sshd.user, "--ssh-key", str(key), "--install-path", install, *flags)


@when('I run rbee setup add-node for "{name}" against the SSH server')
def add_node(context, name: str) -> None:
    _add(context, name)


@when('I run rbee setup add-node for "{name}" against the SSH server with a second install path')
def add_node_second(context, name: str) -> None:
    context.second_install = getattr(context, "second_install", None) or _install(context, "install2")
    _add(context, name, install=context.second_install)


@when('I run rbee setup add-node for "{name}" against the SSH server with a second install path and --update')
def add_node_update(context, name: str) -> None:
    context.second_install = getattr(context, "second_install", None) or _install(context, "install2")
    _add(context, name, install=context.second_install, flags=("--update",))


@when('I run rbee setup add-node for "{name}" against the SSH server with --accept-new-host-key')
def add_node_accept(context, name: str) -> None:
    _add(context, name, flags=("--accept-new-host-key",))


@when('I run rbee setup add-node for "{name}" against the SSH server with a key it does not accept')
def add_node_stranger(context, name: str) -> None:
    _add(context, name, key=context.stranger_key)


@when('I run rbee setup add-node for "{name}" against the SSH server with install path "{path}"')
def add_node_install(context, name: str, path: str) -> None:
    _add(context, name, install=path)


@when('I run rbee setup add-node for "{name}" against a loopback port nothing listens on')
def add_node_closed_port(context, name: str) -> None:
    _add(context, name, port=free_port())


@when('I run rbee setup add-node for "{name}" against a loopback port that accepts and never answers')
def add_node_silent_port(context, name: str) -> None:
    listener = SilentListener()
    context.add_cleanup(listener.close)
    _add(context, name, port=listener.port)


@when("I run rbee setup list-nodes")
def list_nodes(context) -> None:
    _setup(context, "list-nodes")


@when('I run rbee setup remove-node for "{name}"')
def remove_node(context, name: str) -> None:
    context.remove_body = {"name": name}
    _setup(context, "remove-node", "--name", name)


@when("the queen is restarted on the same data dir")
def restart_queen(context) -> None:
    assert not context.queen.stop(), "the old queen left processes behind"
    context.daemons.remove(context.queen)
    extra = [*LONG_CONTEXT, *(item for pair in context.token_flags.items() for item in pair)]
    context.queen = started(context, queen_daemon(context.workdir, extra=extra))
    context.queen_url = context.queen.base_url


@when("the SSH server restarts on the same port with a new host key")
def sshd_new_host_key(context) -> None:
    assert not context.sshd.stop(), "sshd connection processes outlived the queen's connections"
    context.sshd.host_key.unlink()
    context.sshd.host_key.with_suffix(".pub").unlink()
    context.sshd.process = None
    context.sshd.start()


@when('I post a node with install path "{path}" to the queen')
def post_bad_install(context, path: str) -> None:
    body = {"name": "gpu-1", "ssh_host": "127.0.0.1", "ssh_port": context.sshd.port,
            "ssh_user": context.sshd.user, "ssh_key": str(context.ssh_key), "install_path": path}
    context.answer = request("POST", context.queen_url + ADD, body, headers=_bearer(context.tokens["queen"]))


@when('I post a node with the key file "{path}" to the queen')
def post_bad_key(context, path: str) -> None:
    body = {"name": "gpu-1", "ssh_host": "127.0.0.1", "ssh_port": context.sshd.port,
            "ssh_user": context.sshd.user, "ssh_key": path, "install_path": str(context.install_path)}
    context.answer = request("POST", context.queen_url + ADD, body, headers=_bearer(context.tokens["queen"]))


def _post_again(context, path: str, body: dict) -> None:
    started_at = time.monotonic()
    context.answer = request("POST", context.queen_url + path, body, headers=_bearer(context.tokens["queen"]))
    context.elapsed = time.monotonic() - started_at


def _error(context, status: int, code: str) -> dict:
    assert context.answer.status == status, (context.answer.status, context.answer.body)
    error = context.answer.json()["error"]
    assert error["code"] == code, error
    return error


@then('the queen answers {status:d} with code "{code}"')
def queen_answers(context, status: int, code: str) -> None:
    _error(context, status, code)


@then('posting the same add request to the queen answers {status:d} with code "{code}"')
def add_again(context, status: int, code: str) -> None:
    _post_again(context, ADD, context.add_body)
    _error(context, status, code)


@then('posting the same add request to the queen answers {status:d} with code "{code}" after {n:d} attempts')
def add_again_attempts(context, status: int, code: str, n: int) -> None:
    _post_again(context, ADD, context.add_body)
    assert _error(context, status, code)["details"]["attempts"] == n, context.answer.body


@then('posting the same remove request to the queen answers {status:d} with code "{code}"')
def remove_again(context, status: int, code: str) -> None:
    _post_again(context, REMOVE, context.remove_body)
    _error(context, status, code)


def _ssh_timings(context) -> tuple[int, float, float]:
    """Attempts, the sum of the backoff sleeps between them, and the connect timeout (s)."""
    env = context.env
    attempts = int(env["RBEE_SSH_RETRIES"]) + 1
    backoff = float(env["RBEE_SSH_BACKOFF_INITIAL_S"]) * (2 ** (attempts - 1) - 1)
    return attempts, backoff, float(env["RBEE_SSH_CONNECT_TIMEOUT_S"])


@then("that request took the backoff but less than one connect timeout")
def refused_at_once(context) -> None:
    _, backoff, timeout = _ssh_timings(context)
    assert backoff <= context.elapsed < timeout, (context.elapsed, backoff, timeout)


@then("that request waited out the connect timeout on each attempt, plus the backoff")
def waited_out_timeouts(context) -> None:
    attempts, backoff, timeout = _ssh_timings(context)
    least = timeout * attempts + backoff
    assert least <= context.elapsed < least + TIMEOUT_SLACK_S, (context.elapsed, least)


@then('the command exits 0 and prints "{text}"')
def exits_0(context, text: str) -> None:
    result = context.result
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert text in result.stdout, result.stdout


@then('the command exits 1 with "{code}" on stderr')
def exits_1(context, code: str) -> None:
    result = context.result
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert f"error: {code}: " in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


@then('the command exits 0 and lists "{name}" at the SSH server with rbee\'s version and a latency in ms')
def lists_node(context, name: str) -> None:
    result = context.result
    assert result.returncode == 0, (result.stdout, result.stderr)
    rows = [line for line in result.stdout.splitlines() if line.split()[:1] == [name]]
    assert len(rows) == 1, result.stdout
    row = rows[0]
    assert f"{context.sshd.user}@127.0.0.1:{context.sshd.port}" in row, row
    assert str(context.install_path) in row and f" {__version__} " in row, row
    assert re.search(r" \d+(\.\d+)? ms ", row), row


def _listed(context) -> list[dict]:
    answer = request("GET", context.queen_url + LIST, headers=_bearer(context.tokens["queen"]))
    assert answer.status == 200, answer.body
    return answer.json()["nodes"]


@then('the queen lists "{name}" with the second install path')
def listed_with_second(context, name: str) -> None:
    nodes = {node["name"]: node for node in _listed(context)}
    assert nodes[name]["install_path"] == str(context.second_install), nodes


@then("the queen lists no node")
def lists_nothing(context) -> None:
    assert _listed(context) == []


def _host_fingerprint(context) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", f"{context.sshd.host_key}.pub"], capture_output=True,
                         text=True, check=True).stdout
    return out.split()[1]


@then('stderr names the server\'s host key fingerprint and "{flag}"')
def names_fingerprint(context, flag: str) -> None:
    stderr = context.result.stderr
    assert _host_fingerprint(context) in stderr and flag in stderr, stderr


@then("the queen's known_hosts file holds the SSH server's host key")
def known_hosts_has_key(context) -> None:
    key = context.sshd.known_hosts_line().split()[2]
    path = _known_hosts(context)
    assert key in path.read_text(), path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600, oct(path.stat().st_mode)


@then("stderr says to add the key's public half to authorized_keys")
def says_authorized_keys(context) -> None:
    stderr = context.result.stderr
    assert "authorized_keys" in stderr and f"{context.stranger_key}.pub" in stderr, stderr


@then('stderr says how to install rbee at "{path}"')
def says_install(context, path: str) -> None:
    stderr = context.result.stderr
    assert f"python3 -m venv {path}" in stderr and f"pip install rbee=={__version__}" in stderr, stderr


@then("the SSH server logged no connection")
def no_connection(context) -> None:
    assert context.sshd.connections_logged() == 0, context.sshd.log_path.read_text()
