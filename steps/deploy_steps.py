"""Steps deploying rbee with `rbee deploy systemd`, checked by systemd-analyze and run by a real
systemd user manager."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from behave import given, register_type, step, then, when

from rbee.common.ports import WORKER_PORT_BLOCK, free_port
from rbee.common.secrets import ROLES, generate_token, write_token_file
from rbee.testing import systemd_user
from rbee.testing.cluster import alive, http_json, kill_survivors, wait_until
from rbee.testing.http_client import EventStream, request

RBEE = [sys.executable, "-m", "rbee"]
UNIT_FILES = ("rbee-queen.service", "rbee-hive.service", "rbee-worker@.service")
QUEEN, HIVE = "rbee-queen.service", "rbee-hive.service"
DEPLOY = "rbee deploy systemd"
UNPRIVILEGED_USER = "nobody"
SYSTEMD_BASE = Path("/run")
"""Deployed units have PrivateTmp=: the manager, its notify socket and every file they use must
live outside /tmp, or the units would not see them."""
PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"))
"""What PrivateTmp= hides from a unit."""


def _unit_name(text: str) -> str:
    """A step parameter that only matches an rbee unit's name, so these steps match no others."""
    return text


_unit_name.pattern = r"rbee-[A-Za-z0-9@_.-]+\.service"  # type: ignore[attr-defined]
register_type(RbeeUnit=_unit_name)


class DeployedUnits:
    """A user manager and every process seen in it; `stop` ends it and returns the survivors."""

    def __init__(self, manager: systemd_user.UserManager) -> None:
        self.manager = manager
        self.seen: set[int] = set()

    def note(self) -> None:
        """Remember every process now in the manager's units."""
        self.seen.update(self.manager.pids())

    def stop(self) -> list[int]:
        """SIGTERM the manager (it stops its units); kill and report anything that outlived it."""
        self.note()
        self.manager.stop()
        return kill_survivors(self.seen, 5.0)


def _deploy_manager(context, uid: int | None) -> None:
    """A user manager (root's, or `uid`'s) whose scenario folder, tokens and model live under /run."""
    assert systemd_user.available(), "systemd is not installed (make test installs it)"
    root = Path(tempfile.mkdtemp(prefix="rbee-deploy-", dir=SYSTEMD_BASE))
    context.add_cleanup(shutil.rmtree, root, ignore_errors=True)
    context.workdir = root
    token_files(context)
    context.model = Path(shutil.copy(context.tiny_model, root / "tiny.gguf"))
    root.chmod(0o755)
    context.manager = systemd_user.UserManager(base=root, uid=uid)
    context.units = DeployedUnits(context.manager)
    context.daemons.append(context.units)
    context.manager.start()


@given("a systemd user manager for deployed units")
def deploy_manager(context) -> None:
    _deploy_manager(context, None)


@given("an unprivileged user's systemd manager for deployed units")
def unprivileged_manager(context) -> None:
    _deploy_manager(context, pwd.getpwnam(UNPRIVILEGED_USER).pw_uid)


@given("token files for queen, hive and worker")
def token_files(context) -> None:
    context.token_dir = context.workdir / "tokens"
    context.tokens = {role: generate_token() for role in ROLES}
    for role, token in context.tokens.items():
        write_token_file(context.token_dir / f"{role}.token", token)


@given("an rbee script in the scenario's folder, which other users cannot enter")
def closed_script(context) -> None:
    script = context.workdir / "bin" / "rbee"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\n")
    script.chmod(0o755)
    assert not context.workdir.stat().st_mode & 0o001, "the scenario folder is open to others"


@given("an rbee virtualenv under /tmp")
def tmp_virtualenv(context) -> None:
    """A virtualenv in /tmp whose bin/rbee runs rbee: a .pth adds this virtualenv's packages to it
    (as an editable install links its source), the script is the one pip writes."""
    venv = Path(tempfile.mkdtemp(prefix="rbee-venv-", dir=PRIVATE_TMP[0]))
    context.add_cleanup(shutil.rmtree, venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site_packages = next((venv / "lib").glob("python*/site-packages"))
    (site_packages / "rbee-tests.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
    script = venv / "bin" / "rbee"
    script.write_text(f"#!{venv}/bin/python\nimport sys\nfrom rbee.cli.main import main\nsys.exit(main())\n")
    script.chmod(0o755)
    venv.chmod(0o755)
    context.tmp_venv = venv


@given("the {role} token file has mode {mode}")
def token_mode(context, role: str, mode: str) -> None:
    (context.token_dir / f"{role}.token").chmod(int(mode, 8))


@given("the {role} token file is missing")
def token_missing(context, role: str) -> None:
    (context.token_dir / f"{role}.token").unlink()


def deploy_environment(context) -> dict[str, str]:
    """The manager's environment, or private XDG folders when no manager runs."""
    manager = getattr(context, "manager", None)
    if manager is not None:
        return {**manager.env, **context.env}
    runtime = context.workdir / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return {**os.environ, "XDG_RUNTIME_DIR": str(runtime),
            "XDG_CONFIG_HOME": str(context.workdir / "config"), **context.env}


@when('I run "{command}" for a test machine')
def run_deploy(context, command: str) -> None:
    deploy_for_test_machine(context, command, RBEE, deploy_environment(context))


def deploy_for_test_machine(context, command: str, rbee: list[str], env: dict[str, str],
                            cwd: Path | None = None) -> None:
    """Run `command` (an `rbee deploy systemd …` line) through `rbee` with this test machine's
    folders and free ports, in `cwd`; the result is `context.deploy`."""
    assert command.startswith(DEPLOY), command
    ports = {"queen": free_port(), "hive": free_port(), "worker": free_port(block=WORKER_PORT_BLOCK)}
    context.dest = context.manager.unit_dir if hasattr(context, "manager") else context.workdir / "units"
    machine = [
        "--data-dir", str(context.workdir / "data"), "--token-dir", str(context.token_dir),
        "--log-dir", str(context.workdir / "logs"), "--dest", str(context.dest),
        "--queen-port", str(ports["queen"]), "--hive-port", str(ports["hive"]),
        "--worker-port-start", str(ports["worker"]),
    ]
    context.deploy = subprocess.run(
        [*rbee, "deploy", "systemd", *machine,
         *shlex.split(command.removeprefix(DEPLOY).replace("{workdir}", str(context.workdir))
                      .replace("{venv}", str(getattr(context, "tmp_venv", "{venv}"))))],
        env=env, capture_output=True, text=True, timeout=120, cwd=cwd,
    )
    context.queen_url = f"http://127.0.0.1:{ports['queen']}"
    context.hive_url = f"http://127.0.0.1:{ports['hive']}"


@then("it exits 0 and reports {first:RbeeUnit} and {second:RbeeUnit} active")
def started_units(context, first: str, second: str) -> None:
    assert context.deploy.returncode == 0, context.deploy.stderr
    for unit in (first, second):
        assert f"{unit}: active" in context.deploy.stdout, context.deploy.stdout


@then("it exits 0 and names the three unit files it wrote")
def deploy_ok(context) -> None:
    assert context.deploy.returncode == 0, context.deploy.stderr
    for name in UNIT_FILES:
        assert f"wrote {context.dest / name}" in context.deploy.stdout, context.deploy.stdout


@then('it exits 1 with "{code}" and "{hint}" on stderr')
def deploy_refused(context, code: str, hint: str) -> None:
    result = context.deploy
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert f"error: {code}:" in result.stderr and hint in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


@then("no unit file was written")
def nothing_written(context) -> None:
    assert not any((context.dest / name).exists() for name in UNIT_FILES)


def _binds(text: str) -> list[Path]:
    """The folders a unit file binds in read-only."""
    bind = "BindReadOnlyPaths="
    return [Path(line.removeprefix(bind)) for line in text.splitlines() if line.startswith(bind)]


@then("every written unit binds that virtualenv read-only, and nothing outside /tmp and /var/tmp")
def binds_venv(context) -> None:
    assert context.deploy.returncode == 0, context.deploy.stderr
    for name in UNIT_FILES:
        binds = _binds((context.dest / name).read_text())
        assert context.tmp_venv in binds, (name, binds)
        assert all(any(path.is_relative_to(root) for root in PRIVATE_TMP) for path in binds), (name, binds)


@then("the queen and the hive see that virtualenv read-only")
def venv_read_only(context) -> None:
    for unit in (QUEEN, HIVE):
        pid = context.manager.show(unit, "MainPID")
        mounts = [line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
        options = [fields[5].split(",") for fields in mounts if fields[4] == str(context.tmp_venv)]
        assert options and "ro" in options[-1], (unit, options)


def _device_lines(unit: str, context) -> list[str]:
    text = (context.dest / unit).read_text()
    return [line for line in text.splitlines() if line.startswith(("Device", "PrivateDevices="))]


@then("the written {first:RbeeUnit} and {second:RbeeUnit} open the NVIDIA GPUs and no other device")
def gpu_devices(context, first: str, second: str) -> None:
    assert context.deploy.returncode == 0, context.deploy.stderr
    for unit in (first, second):
        lines = _device_lines(unit, context)
        assert lines[0] == "DevicePolicy=closed", (unit, lines)
        groups = {line.removeprefix("DeviceAllow=char-").removesuffix(" rw") for line in lines[1:]}
        assert all(line.startswith("DeviceAllow=char-nvidia") for line in lines[1:]), (unit, lines)
        assert {"nvidia", "nvidia-frontend", "nvidia-uvm"} <= groups, (unit, groups)


@then("the written {unit:RbeeUnit} sees no device but the pseudo devices")
def no_devices(context, unit: str) -> None:
    assert _device_lines(unit, context) == ["PrivateDevices=yes"]


@when('"{key}" is misspelled "{wrong}" in the written {unit:RbeeUnit}')
def misspell(context, key: str, wrong: str, unit: str) -> None:
    path = context.dest / unit
    text = path.read_text()
    assert f"\n{key}=" in text, f"{unit} has no {key}="
    path.write_text(text.replace(f"\n{key}=", f"\n{wrong}="))


@when('each written unit is checked with "{command}"')
def verify_units(context, command: str) -> None:
    assert context.deploy.returncode == 0, context.deploy.stderr
    context.checks = {
        name: subprocess.run([*shlex.split(command), str(context.dest / name)],
                             env=deploy_environment(context), capture_output=True, text=True, timeout=60)
        for name in UNIT_FILES
    }


@then("every check is silent on stderr")
def checks_silent(context) -> None:
    for name, result in context.checks.items():
        assert result.returncode == 0 and result.stderr == "", (name, result.returncode, result.stderr)


@then('the check of {unit:RbeeUnit} reports "{text}" on stderr')
def check_complains(context, unit: str, text: str) -> None:
    assert text in context.checks[unit].stderr, context.checks[unit].stderr


@when("I start {unit:RbeeUnit} with systemctl")
def start_unit(context, unit: str) -> None:
    """Start a unit and probe its daemon the moment systemctl returns (Type=notify: it must answer)."""
    assert context.deploy.returncode == 0, context.deploy.stderr
    result = context.manager.systemctl("start", unit, check=False)
    assert result.returncode == 0, (unit, result.stderr, context.manager.show(unit, "Result"),
                                    context.manager.show(unit, "ExecMainStatus"))
    health = {QUEEN: f"{context.queen_url}/health", HIVE: f"{context.hive_url}/v1/health"}.get(unit)
    if health:
        context.answered = {**getattr(context, "answered", {}), unit: http_json(health)[0]}


@then("both units are active and their daemons answered as soon as systemctl returned")
def active_and_answering(context) -> None:
    for unit in (QUEEN, HIVE):
        assert context.manager.show(unit, "Type") == "notify", unit
        assert context.manager.show(unit, "ActiveState") == "active", unit
    assert context.answered == {QUEEN: 200, HIVE: 200}, context.answered


@then("the units' status lines come from the daemons")
def status_lines(context) -> None:
    assert context.manager.show(HIVE, "StatusText") == "0 workers"
    assert "tasks running" in context.manager.show(QUEEN, "StatusText")


@step('"rbee infer" with the tiny model streams tokens through the queen')
def infer(context) -> None:
    result = subprocess.run(
        [*RBEE, "infer", "--queen", context.queen_url,
         "--token-file", str(context.token_dir / "queen.token"), "--model", f"file://{context.model}",
         "--prompt", "Once", "--max-tokens", "8", "--ignore-eos", "--stats"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "[8 tokens, stop: max_tokens" in result.stderr, result.stderr


@then("the worker runs in the hive unit and the queen unit holds only the queen")
def worker_in_hive(context) -> None:
    hive_pids = context.manager.unit_pids(HIVE)
    assert len(hive_pids) == 2, hive_pids
    assert context.manager.unit_pids(QUEEN) == [int(context.manager.show(QUEEN, "MainPID"))]


@then("the queen refuses a request without its token")
def queen_wants_token(context) -> None:
    answer = request("GET", f"{context.queen_url}/v1/models")
    assert answer.status == 401, answer.status


@then("every daemon's log names systemd credentials as the source of its tokens")
def credential_logs(context) -> None:
    for name, role in (("rbee-queen.log", "queen"), ("rbee-hive.log", "hive")):
        text = (context.workdir / "logs" / name).read_text()
        assert f"{role} requires bearer token {role}=" in text, text
        for peer in ROLES:
            assert f"(systemd credential {peer}-token)" in text, (name, peer, text)
    worker_logs = sorted((context.workdir / "data" / "hive" / "logs").glob("*.log"))
    assert worker_logs, "the hive spawned no worker for the streamed task"
    for log in worker_logs:
        text = log.read_text()
        assert "worker requires bearer token worker=" in text, (log.name, text[-2000:])
        assert "(systemd credential worker-token)" in text, (log.name, text[-2000:])


@then("no process of the units has a token or a token file on its command line or in its environment")
def no_token_on_cmdline(context) -> None:
    pids = context.manager.unit_pids(QUEEN) + context.manager.unit_pids(HIVE)
    assert len(pids) == 3, pids
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode()
        assert "token-file" not in cmdline, cmdline
        assert "CREDENTIALS_DIRECTORY=" in environ
        assert not any(token in cmdline or token in environ for token in context.tokens.values()), pid


@when("I note the processes of {unit:RbeeUnit}")
def note_processes(context, unit: str) -> None:
    context.noted = context.manager.unit_pids(unit)
    context.units.note()
    assert len(context.noted) >= 2, f"no worker runs in {unit}: {context.noted}"


@when("I stop {unit:RbeeUnit} with systemctl")
def stop_unit(context, unit: str) -> None:
    context.manager.systemctl("stop", unit)


@then("{unit:RbeeUnit} is inactive and none of the noted processes is alive")
def stopped_clean(context, unit: str) -> None:
    assert context.manager.show(unit, "ActiveState") == "inactive"
    assert context.manager.show(unit, "Result") == "success", context.manager.show(unit, "Result")
    assert not [pid for pid in context.noted if alive(pid)], context.noted


@when('a worker instance "{name}" serves the tiny model with the fault "{fault}"')
def worker_instance(context, name: str, fault: str) -> None:
    port = free_port()
    context.worker_urls = {name: f"http://127.0.0.1:{port}"}
    env_file = context.manager.config_dir / "rbee" / "workers" / f"{name}.env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text(f"RBEE_WORKER_MODEL={context.model}\nRBEE_WORKER_PORT={port}\n"
                        f"RBEE_WORKER_ARGS=--slots 1\nRBEE_FAULTS={fault}\nRBEE_ALLOW_FAULTS=1\n")


def _worker_auth(context) -> dict[str, str]:
    return {"Authorization": f"Bearer {context.tokens['worker']}"}


@when('a generation is started on worker instance "{name}"')
def generation(context, name: str) -> None:
    body = {"prompt": "Once", "max_tokens": 50, "ignore_eos": True}
    stream = EventStream(f"{context.worker_urls[name]}/v1/inference", body, timeout=30,
                         headers_out=_worker_auth(context)).open()
    context.streams.append(stream)
    assert stream.status == 200, stream.status


@then("systemd restarts {unit:RbeeUnit} within {seconds:d} seconds")
def restarted(context, unit: str, seconds: int) -> None:
    assert wait_until(lambda: int(context.manager.show(unit, "NRestarts") or 0) >= 1, seconds, 0.1), (
        context.manager.show(unit, "NRestarts"), context.manager.show(unit, "ActiveState")
    )


@then('the log of worker instance "{name}" says it stopped petting the watchdog')
def stopped_petting(context, name: str) -> None:
    text = (context.workdir / "logs" / f"rbee-worker-{name}.log").read_text()
    assert "no longer petting" in text, text


@then('worker instance "{name}" answers its readiness check again')
def ready_again(context, name: str) -> None:
    url = f"{context.worker_urls[name]}/v1/ready"

    def ready() -> bool:
        try:
            return request("GET", url, timeout=2, headers=_worker_auth(context)).status == 200
        except OSError:
            return False

    assert wait_until(ready, 20.0, 0.1)


@when("the test machine's files are handed to that user")
def hand_over(context) -> None:
    context.manager.chown(context.workdir)


@when("each written unit runs a probe of its credentials instead of rbee")
def probe_units(context) -> None:
    """Keep every sandboxing and credential line, swap the program for a shell check.

    An unprivileged user cannot reach this machine's Python (it lives under /root), so the
    probe proves what can be proven: the manager sets up each unit's sandbox and credentials.
    """
    assert context.deploy.returncode == 0, context.deploy.stderr
    probe = ('ExecStart=/bin/sh -c \'for f in "$$CREDENTIALS_DIRECTORY"/*-token; do test -s "$$f" || exit 1; '
             'done\'\nType=oneshot\nRemainAfterExit=yes')
    dropped = ("Type=", "NotifyAccess=", "WatchdogSec=", "Restart=", "RestartSec=",
               "RestartPreventExitStatus=")
    for name in UNIT_FILES:
        path = context.dest / name
        lines = [line for line in path.read_text().splitlines() if not line.startswith(dropped)]
        path.write_text("\n".join(probe if line.startswith("ExecStart=") else line for line in lines) + "\n")
    env_file = context.manager.config_dir / "rbee" / "workers" / "probe.env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text(f"RBEE_WORKER_MODEL={context.model}\nRBEE_WORKER_PORT={free_port()}\n")
    context.manager.chown(context.manager.config_dir)
    context.manager.systemctl("daemon-reload")


@then("{first:RbeeUnit}, {second:RbeeUnit} and {third:RbeeUnit} all ran their probe successfully")
def probes_passed(context, first: str, second: str, third: str) -> None:
    for unit in (first, second, third):
        state = {prop: context.manager.show(unit, prop)
                 for prop in ("ActiveState", "Result", "ExecMainStatus")}
        assert state == {"ActiveState": "active", "Result": "success", "ExecMainStatus": "0"}, (unit, state)
