"""Steps running ansible/site.yml over a real sshd on loopback against a node whose service manager is a
real systemd user manager (the manager, its scenario folder and the token files come from deploy_steps).

rbee is installed on the node from an offline wheelhouse of this checkout (rbee.testing.wheelhouse),
built once per run.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from behave import given, then, when

from rbee import __version__
from rbee.common.ports import WORKER_PORT_BLOCK, free_port
from rbee.testing.cluster import http_json, kill_survivors
from rbee.testing.sshd import Sshd, generate_key
from rbee.testing.wheelhouse import build_wheelhouse

CHECKOUT = Path(__file__).resolve().parents[1]
SITE = CHECKOUT / "ansible" / "site.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
NODE = "node-1"
QUEEN, HIVE = "rbee-queen.service", "rbee-hive.service"
PLAYBOOK_TIMEOUT_S = 300
RECAP = re.compile(rf"^{NODE}\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$", re.MULTILINE)
FAILED_EXIT = 2
UNREACHABLE_EXIT = 4
MASTER_PID = re.compile(r"Master running \(pid=(\d+)\)")
MASTER_STOP_S = 5.0


@dataclass(frozen=True)
class PlaybookRun:
    """One ansible-playbook run: exit code, output and wall time."""

    returncode: int
    output: str
    seconds: float

    def recap(self) -> dict[str, int]:
        """The PLAY RECAP counts of the node (ok, changed, unreachable, failed, ...)."""
        match = RECAP.search(self.output)
        assert match, f"no PLAY RECAP line for {NODE}:\n{self.output[-3000:]}"
        return {key: int(value) for key, value in (item.split("=") for item in match["counts"].split())}

    def explain(self) -> str:
        """What to show when an assertion on this run fails."""
        return f"exit {self.returncode} after {self.seconds:.1f} s:\n{self.output[-6000:]}"


class SshMasters:
    """The SSH master connections Ansible keeps open between its tasks (ControlPersist), one socket
    each in `folder`; `stop` ends each master by its PID and returns those that outlived it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def pids(self) -> list[int]:
        """The PID of the master behind each control socket, as the master itself reports it."""
        found = []
        for socket in sorted(self.folder.glob("*")) if self.folder.is_dir() else []:
            check = subprocess.run(["ssh", "-F", "/dev/null", "-O", "check", "-o", f"ControlPath={socket}",
                                    NODE], capture_output=True, text=True, timeout=10)
            match = MASTER_PID.search(check.stderr)
            if match:
                found.append(int(match[1]))
        return found

    def stop(self) -> list[int]:
        """SIGTERM each master by PID; SIGKILL and report any still alive after a grace."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        return kill_survivors(set(pids), MASTER_STOP_S)


def _wheelhouse(context) -> Path:
    """This checkout's wheelhouse, built on first use in the run's folder and kept for the run."""
    folder = context.run_dir / "wheelhouse"
    if not (folder / "done").exists():
        build_wheelhouse(CHECKOUT, folder)
        (folder / "done").touch()
    return folder


def _write_private(path: Path, text: str) -> None:
    """A file only its owner can read (created 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


@given("an sshd on loopback that lets the test key log in to the node")
def node_sshd(context) -> None:
    folder = context.workdir / "ssh"
    context.ssh_key = generate_key(folder / "id_ed25519")
    context.sshd = Sshd(folder / "sshd", [context.ssh_key], sftp=True)
    context.daemons.append(context.sshd)
    context.sshd.start()
    context.known_hosts = folder / "known_hosts"
    context.known_hosts.write_text(context.sshd.known_hosts_line())
    context.ssh_masters = SshMasters(folder / "cp")
    context.daemons.append(context.ssh_masters)


@given("an inventory of that node for user units installed from this checkout's wheelhouse")
def node_inventory(context) -> None:
    """Everything at the role's defaults except what a node inside a test needs: its own folders,
    ports, the test manager's environment and the fast timings of the suite."""
    manager = context.manager
    python = sys._base_executable  # the Python this virtualenv was made from: the wheels fit it
    ports = {"queen": free_port(), "hive": free_port(), "worker": free_port(block=WORKER_PORT_BLOCK)}
    context.node = context.workdir / "node"
    context.node.mkdir()
    host = {
        "ansible_host": "127.0.0.1",
        "ansible_port": context.sshd.port,
        "ansible_user": getpass.getuser(),
        "ansible_ssh_common_args": f"-F /dev/null -o UserKnownHostsFile={context.known_hosts} "
                                   "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
        "ansible_control_path_dir": str(context.ssh_masters.folder),
        "ansible_python_interpreter": python,
        "ansible_pipelining": True,
        "ansible_remote_tmp": str(context.node / "ansible-tmp"),
        "rbee_scope": "user",
        "rbee_environment": {
            "XDG_RUNTIME_DIR": str(manager.runtime_dir),
            "XDG_CONFIG_HOME": str(manager.config_dir),
            "XDG_DATA_HOME": str(context.node / "share"),
            "PIP_CONFIG_FILE": os.devnull,
        },
        "rbee_python": python,
        "rbee_install_dir": str(context.node / "venv"),
        "rbee_pip_find_links": str(_wheelhouse(context)),
        "rbee_queen_port": ports["queen"],
        "rbee_hive_port": ports["hive"],
        "rbee_worker_port_start": ports["worker"],
        "rbee_log_dir": str(context.workdir / "logs"),
        "rbee_tunables": {name: value for name, value in context.env.items() if name.startswith("RBEE_")},
    }
    context.node_vars = host
    context.inventory = context.workdir / "inventory.yml"
    context.inventory.write_text(yaml.safe_dump({"rbee_nodes": {"hosts": {NODE: host}}}))
    context.secrets = context.workdir / "secrets.yml"
    _write_private(context.secrets, yaml.safe_dump({"rbee_tokens": context.tokens}))
    context.rbee_config_dir = manager.config_dir / "rbee"
    context.queen_url = f"http://127.0.0.1:{ports['queen']}"
    context.hive_url = f"http://127.0.0.1:{ports['hive']}"


def _run_playbook(context, key: Path, *extra: str) -> PlaybookRun:
    """ansible-playbook site.yml with `--diff` (token files would show there without no_log)."""
    config = context.workdir / "ansible.cfg"
    config.touch()
    env = {name: value for name, value in os.environ.items() if not name.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(config), ANSIBLE_HOME=str(context.workdir / "ansible-home"),
               ANSIBLE_NOCOLOR="1")
    command = [str(ANSIBLE_PLAYBOOK), "-i", str(context.inventory), "-e", f"@{context.secrets}",
               "--private-key", str(key), "--diff", *extra, str(SITE)]
    began = time.monotonic()
    result = subprocess.run(command, cwd=context.workdir, env=env, capture_output=True, text=True,
                            timeout=PLAYBOOK_TIMEOUT_S)
    return PlaybookRun(result.returncode, result.stdout + result.stderr, time.monotonic() - began)


def _main_pids(context) -> dict[str, str]:
    return {unit: context.manager.show(unit, "MainPID") for unit in (QUEEN, HIVE)}


@when("ansible-playbook runs site.yml with the test key")
def run_with_key(context) -> None:
    context.run = _run_playbook(context, context.ssh_key)


@when('ansible-playbook runs site.yml with the test key and the queen setting "{setting}"')
def run_with_setting(context, setting: str) -> None:
    key, _, value = setting.partition(":")
    extra = context.workdir / "queen-setting.yml"
    extra.write_text(yaml.safe_dump({"rbee_queen_config": {key.strip(): yaml.safe_load(value)}}))
    context.run = _run_playbook(context, context.ssh_key, "-e", f"@{extra}")


@when("ansible-playbook runs site.yml with the test key again")
def run_again(context) -> None:
    context.pids_before = _main_pids(context)
    context.run = _run_playbook(context, context.ssh_key)


@when("ansible-playbook runs site.yml with a key the node does not accept")
def run_with_wrong_key(context) -> None:
    """Without a master connection: an open one would let any key through (TESTING.md)."""
    context.run = _run_playbook(context, generate_key(context.workdir / "ssh" / "wrong_ed25519"),
                                "-e", "ansible_ssh_args='-o ControlMaster=no'")


@then("it exits 0 and reports changes on the node")
def changed_run(context) -> None:
    run = context.run
    assert run.returncode == 0, run.explain()
    recap = run.recap()
    assert recap["changed"] > 0 and recap["failed"] == 0 and recap["unreachable"] == 0, recap


@then("it exits 0 and reports changed=0")
def unchanged_run(context) -> None:
    run = context.run
    assert run.returncode == 0, run.explain()
    recap = run.recap()
    assert recap["changed"] == 0 and recap["ok"] > 0 and recap["failed"] == 0, (recap, run.explain())


@then("it exits 4 and reports the node unreachable")
def unreachable_run(context) -> None:
    run = context.run
    assert run.returncode == UNREACHABLE_EXIT, run.explain()
    assert run.recap()["unreachable"] == 1, run.explain()
    assert "Permission denied (publickey)" in run.output, run.explain()


@then('it exits 2 and the output names "{text}"')
def failed_run(context, text: str) -> None:
    run = context.run
    assert run.returncode == FAILED_EXIT, run.explain()
    assert run.recap()["failed"] == 1, run.explain()
    assert text in run.output, run.explain()


@then("rbee-hive.service and rbee-queen.service are active and answer their health checks")
def units_healthy(context) -> None:
    for unit in (QUEEN, HIVE):
        state = context.manager.show(unit, "ActiveState")
        assert state == "active", (unit, state, context.manager.show(unit, "Result"))
        assert context.manager.show(unit, "UnitFileState") == "enabled", unit
    for url in (f"{context.queen_url}/health", f"{context.hive_url}/v1/health"):
        status, body = http_json(url)
        assert status == 200 and body["version"] == __version__, (url, status, body)
    context.units.note()


@then("each token file on the node has mode 0600 and no token appears in the playbook's output")
def token_files(context) -> None:
    for role, token in context.tokens.items():
        path = context.rbee_config_dir / "tokens" / f"{role}.token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
        assert path.read_text() == f"{token}\n", path
        assert token not in context.run.output, f"the {role} token was printed"
    assert stat.S_IMODE((context.rbee_config_dir / "tokens").stat().st_mode) == 0o700


@then("the queen and the hive run with the config file the playbook wrote, which rbee config check accepts")
def config_files(context) -> None:
    rbee = context.node / "venv" / "bin" / "rbee"
    for unit, daemon in ((QUEEN, "queen"), (HIVE, "hive")):
        config = context.rbee_config_dir / f"{daemon}.yaml"
        command = Path(f"/proc/{context.manager.show(unit, 'MainPID')}/cmdline").read_bytes().split(b"\0")
        assert [b"--config", str(config).encode()] in [command[i:i + 2] for i in range(len(command))], command
        check = subprocess.run([str(rbee), "config", "check", str(config)], capture_output=True, text=True,
                               timeout=60)
        assert check.returncode == 0 and f"ok ({daemon})" in check.stdout, (check.stdout, check.stderr)


@then("its units are those `rbee deploy systemd --user` renders for the same settings, plus --config")
def same_units(context) -> None:
    node = context.node_vars
    dest = context.workdir / "rendered"
    settings = ["--rbee", str(context.node / "venv" / "bin" / "rbee"), "--dest", str(dest),
                "--data-dir", str(context.node / "share" / "rbee"),
                "--token-dir", str(context.rbee_config_dir / "tokens"), "--log-dir", node["rbee_log_dir"],
                "--queen-port", str(node["rbee_queen_port"]), "--hive-port", str(node["rbee_hive_port"]),
                "--worker-port-start", str(node["rbee_worker_port_start"])]
    env = {name: value for name, value in os.environ.items() if not name.startswith("RBEE_")}
    env.update(node["rbee_tunables"], XDG_CONFIG_HOME=str(context.manager.config_dir))
    result = subprocess.run([sys.executable, "-m", "rbee", "deploy", "systemd", "--user", *settings], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for rendered in sorted(dest.iterdir()):
        written = (context.manager.unit_dir / rendered.name).read_text()
        daemon = rendered.name.removeprefix("rbee-").removesuffix(".service")
        config = f" --config {context.rbee_config_dir / daemon}.yaml"
        assert (config in written) == (daemon in ("queen", "hive")), (rendered.name, written)
        assert written.replace(config, "") == rendered.read_text(), rendered.name


@then("the queen and the hive kept their processes")
def same_processes(context) -> None:
    assert _main_pids(context) == context.pids_before, (_main_pids(context), context.pids_before)


@then("the queen's config file was never put in place and no unit was written on the node")
def no_queen_config_no_units(context) -> None:
    assert (context.node / "venv" / "bin" / "rbee").exists(), "the run failed before installing rbee"
    assert not (context.rbee_config_dir / "queen.yaml").exists()
    assert not any(context.manager.unit_dir.glob("rbee-*")), list(context.manager.unit_dir.iterdir())


@then("sshd accepted no login and nothing was installed on the node")
def nothing_installed(context) -> None:
    log = context.sshd.log_path.read_text(errors="replace")
    assert context.sshd.connections_logged() >= 1, "ansible never reached sshd"
    assert "Accepted publickey" not in log, log[-2000:]
    assert not (context.node / "venv").exists()
    assert not (context.rbee_config_dir).exists()
    assert not any(context.manager.unit_dir.glob("rbee-*")), list(context.manager.unit_dir.iterdir())
