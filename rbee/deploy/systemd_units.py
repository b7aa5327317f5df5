"""systemd units for one machine: the packaged templates (rbee/deploy/jobs/systemd/) rendered with
its paths, ports and tokens.

The templates use `@{name}` placeholders (`string.Template` with `@` as delimiter, so systemd's own
`$VAR` and `%i` stay as they are). User scope (`systemctl --user`) keeps the data dir writable
through `ReadWritePaths=`; system scope runs every unit as one dynamic user `rbee` whose data
lives in a `StateDirectory=` under /var/lib. Where the units' sandboxing would hide rbee's install
(a virtualenv under /tmp), they bind it in read-only (`systemd_sandbox`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import string
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rbee.common.config_env import default_data_dir, user_config_dir
from rbee.common.defaults import HIVE_PORT, QUEEN_PORT, WILDCARD_HOSTS, WORKER_PORT_START
from rbee.common.exit_codes import WORKER_LOAD_FAILED
from rbee.common.secrets import ROLES, SecretError, read_token_file
from rbee.common.tunables import SHARED_VARIABLES, Timings, TunableError, load_timings, shared_environment
from rbee.deploy.systemd_sandbox import directives, read_only_binds
from rbee.deploy.templates import SYSTEMD_DIR, systemd_template

QUEEN_UNIT = "rbee-queen.service"
HIVE_UNIT = "rbee-hive.service"
WORKER_UNIT = "rbee-worker@.service"
UNITS = (QUEEN_UNIT, HIVE_UNIT, WORKER_UNIT)
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_CONFIG_DIR = Path("/etc/rbee")
STATE_ROOT = Path("/var/lib")
DEFAULT_WATCHDOG_S = 30.0
START_TIMEOUT_S = 60
STOP_MARGIN_S = 10
SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+/-]*$")
SAFE_HOST = re.compile(r"^[A-Za-z0-9.:-]+$")
DROP = "\x00"
"""Stands for an empty block placeholder, whose line is then dropped."""
INSTALL_PROBE = (
    "import importlib.util, json, os, sys; spec = importlib.util.find_spec('rbee'); "
    "print(json.dumps({'rbee': list(spec.submodule_search_locations or []) if spec else [], "
    "'paths': [sys.prefix, sys.base_prefix, *filter(os.path.exists, sys.path)]}))"
)
"""Run by rbee's Python: where it finds rbee, and its prefix, base Python and import path."""
PROBE_TIMEOUT_S = 60
GPU_DEVICE_GROUPS = ("nvidia-frontend", "nvidia", "nvidiactl", "nvidia-uvm", "nvidia-caps")
"""The NVIDIA driver's device groups in /proc/devices: /dev/nvidiactl and /dev/nvidia0… (major 195,
`nvidia-frontend` in older drivers), /dev/nvidia-uvm and -uvm-tools, and the MIG capabilities."""
GPU_DEVICE_OPTIONS = ("DevicePolicy=closed", *(f"DeviceAllow=char-{group} rw" for group in GPU_DEVICE_GROUPS))
"""System units that run workers: the standard pseudo devices and the NVIDIA GPUs, nothing else."""


class DeployError(Exception):
    """A deployment that cannot work as asked: an UPPER_SNAKE code and a message with the fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class UnitTemplate(string.Template):
    """`@{name}` placeholders; `@@` is a literal `@`."""

    delimiter = "@"


def default_unit_dir(user: bool) -> Path:
    """Where the manager of the scope reads unit files written by an administrator."""
    return user_config_dir() / "systemd" / "user" if user else SYSTEM_UNIT_DIR


def default_config_dir(user: bool) -> Path:
    """rbee's own configuration folder of the scope: token files and worker instance files."""
    return user_config_dir() / "rbee" if user else SYSTEM_CONFIG_DIR


def default_deploy_data_dir(user: bool) -> Path:
    """The queen's data dir (the hive's is its `hive/` folder)."""
    return default_data_dir() if user else STATE_ROOT / "rbee"


def find_rbee() -> Path:
    """The `rbee` executable next to the running interpreter (a virtualenv's), else on PATH."""
    beside = Path(sys.executable).parent / "rbee"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside.absolute()
    found = shutil.which("rbee")
    if found is None:
        raise DeployError("RBEE_NOT_FOUND", "no `rbee` executable next to this Python or on PATH; "
                          "install rbee (pip install .) first")
    return Path(found).absolute()


def _shebang(executable: Path) -> list[str]:
    """The words of a script's `#!` line (the interpreter and its arguments); none for a binary."""
    with executable.open("rb") as handle:
        first = handle.readline(4096)
    return first[2:].decode(errors="replace").split() if first.startswith(b"#!") else []


def _python_folders(rbee: Path, command: list[str]) -> list[Path]:
    """Ask the Python of `rbee`'s `#!` line where it runs rbee from (`-E -P`: as in a unit, without
    this shell's PYTHON* variables or working directory)."""
    shown = " ".join(command)
    try:
        probe = subprocess.run([*command, "-E", "-P", "-c", INSTALL_PROBE], capture_output=True, text=True,
                               timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = f"the Python of {rbee} ({shown}) does not run: {exc}"
        raise DeployError("RBEE_NOT_RUNNABLE", problem) from None
    lines = probe.stdout.splitlines() if probe.returncode == 0 else []
    found = json.loads(lines[-1]) if lines else {"rbee": []}
    if not found["rbee"]:
        reason = " ".join(probe.stderr.split()[-30:]) or "rbee is not installed in it"
        raise DeployError("RBEE_NOT_RUNNABLE", f"the Python of {rbee} ({shown}) cannot import rbee: {reason}")
    return [Path(item) for item in (*found["paths"], *found["rbee"])]


def install_paths(rbee: Path) -> tuple[Path, ...]:
    """The folders `rbee` runs from, as its own Python reports them: its prefix (the virtualenv),
    the Python that was made from, its import path and the rbee package (an editable install's
    source), each also with its symlinks resolved. A program that is no Python script stands for
    itself; one that is not an executable file has none (`check_settings` refuses it)."""
    if not (rbee.is_file() and os.access(rbee, os.X_OK)):
        return ()
    command = _shebang(rbee)
    python = any(Path(word).name.startswith("python") for word in command)
    found = _python_folders(rbee, command) if python else [rbee]
    return tuple(dict.fromkeys(item for path in found for item in (path, path.resolve())))


@dataclass(frozen=True)
class UnitSettings:
    """Everything the three units are rendered from."""

    user: bool
    rbee: Path
    data_dir: Path
    token_dir: Path
    worker_env_dir: Path
    host: str = "127.0.0.1"
    queen_port: int = QUEEN_PORT
    hive_port: int = HIVE_PORT
    worker_port_start: int = WORKER_PORT_START
    watchdog_s: float = DEFAULT_WATCHDOG_S
    log_dir: Path | None = None
    environment: dict[str, str] = field(default_factory=dict)
    install_paths: tuple[Path, ...] = ()
    """The folders the rbee executable runs from; those the sandbox would hide are bound read-only."""

    @property
    def queen_url(self) -> str:
        """Where the hive on this machine reaches the queen."""
        if self.host in WILDCARD_HOSTS:
            return f"http://127.0.0.1:{self.queen_port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.queen_port}"

    @property
    def hive_data_dir(self) -> Path:
        """The hive's data dir: where a queen-started local hive would keep it too."""
        return self.data_dir / "hive"

    def token_file(self, role: str) -> Path:
        """The file a unit loads `role`'s credential from."""
        return self.token_dir / f"{role}.token"

    @property
    def timings(self) -> Timings:
        """The timings the daemons will run with (defaults plus the pinned tunables)."""
        return load_timings(self.environment)


@dataclass(frozen=True)
class SettingNames:
    """What the operator calls each setting, for the messages of `check_values`."""

    data_dir: str = "--data-dir"
    token_dir: str = "--token-dir"
    log_dir: str = "--log-dir"
    rbee: str = "the rbee executable"
    worker_env_dir: str = "the worker config dir"
    host: str = "--host"
    ports: str = "queen, hive and first worker ports"
    watchdog: str = "--watchdog-sec"
    environment: str = "the RBEE_* environment"


def _check_path(name: str, path: Path) -> None:
    if not SAFE_PATH.match(str(path)):
        raise DeployError("UNSAFE_PATH", f"{name} must be an absolute path of letters, digits and "
                          f". _ + - / only (systemd would interpret other characters), not {str(path)!r}")


def check_values(settings: UnitSettings, names: SettingNames = SettingNames()) -> None:
    """Refuse values the units could not run with, each error naming the setting as `names` does:
    the checks of `rbee deploy systemd` and of the Ansible role's `rbee_units` filter alike."""
    paths = {names.data_dir: settings.data_dir, names.token_dir: settings.token_dir,
             names.log_dir: settings.log_dir, names.rbee: settings.rbee,
             names.worker_env_dir: settings.worker_env_dir}
    for name, path in paths.items():
        if path is not None:
            _check_path(name, path)
    if not SAFE_HOST.match(settings.host):
        raise DeployError("INVALID_HOST", f"{names.host} must be an IP address or a host name, "
                          f"not {settings.host!r}")
    ports = {settings.queen_port, settings.hive_port, settings.worker_port_start}
    if len(ports) != 3 or not all(1 <= p <= 65535 for p in ports):
        raise DeployError("INVALID_PORT", f"{names.ports} must be distinct, 1 to 65535")
    if settings.watchdog_s < 1:
        raise DeployError("INVALID_WATCHDOG", f"{names.watchdog} must be at least 1")
    unknown = sorted(set(settings.environment) - SHARED_VARIABLES)
    if unknown:
        raise DeployError("INVALID_TUNABLE", f"{names.environment}: {', '.join(unknown)} is not an rbee "
                          "tunable (docs/configuration.md lists them)")
    try:
        shared_environment(settings.environment)
    except TunableError as exc:
        raise DeployError("INVALID_TUNABLE", f"{names.environment}: {exc}") from None
    if not settings.user and not settings.data_dir.is_relative_to(STATE_ROOT / "rbee"):
        raise DeployError("INVALID_DATA_DIR", "system units keep their data in a StateDirectory: "
                          f"{names.data_dir} must be /var/lib/rbee or a folder below it")


def check_settings(settings: UnitSettings) -> None:
    """`check_values`, then what only this machine can tell: the rbee executable and the token
    files; each error names the fix."""
    check_values(settings)
    if not (settings.rbee.is_file() and os.access(settings.rbee, os.X_OK)):
        raise DeployError("RBEE_NOT_FOUND", f"{settings.rbee} is not an executable file")
    if not settings.user:
        _check_world_executable(settings.rbee)
    check_tokens(settings)


def check_tokens(settings: UnitSettings) -> None:
    """Every role's token file exists, belongs to this user, has mode 0600 and holds a token."""
    for role in ROLES:
        path = settings.token_file(role)
        if not path.exists():
            raise DeployError("TOKEN_FILE_MISSING", f"{path} does not exist; create it with: "
                              f"python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > {path}"
                              f" && chmod 600 {path}")
        try:
            read_token_file(path)
        except SecretError as exc:
            raise DeployError("TOKEN_FILE_INVALID", str(exc)) from None


def _interpreter(executable: Path) -> Path | None:
    """The interpreter a script's `#!` line names (a virtualenv's python), if it has one."""
    words = _shebang(executable)
    return Path(words[0]) if words else None


def _closed_to_others(path: Path) -> Path | None:
    """The first of `path` (also resolved) and its folders that other users cannot run or enter."""
    for target in dict.fromkeys((path, path.resolve())):
        for item in (target, *target.parents):
            try:
                if not os.stat(item).st_mode & stat.S_IXOTH:
                    return item
            except OSError:
                return item
    return None


def _check_world_executable(rbee: Path) -> None:
    """System units run as a dynamic user: rbee, its interpreter and their folders must be open to
    other users (a virtualenv made from a Python under /root is not)."""
    interpreter = _interpreter(rbee)
    if interpreter is not None and not os.stat(rbee).st_mode & stat.S_IROTH:
        raise DeployError("EXECUTABLE_NOT_ACCESSIBLE", f"system units run as a dynamic user, who cannot "
                          f"read {rbee}; run: chmod o+r {rbee}")
    for target in (rbee, *([interpreter] if interpreter else [])):
        closed = _closed_to_others(target)
        if closed is not None:
            raise DeployError("EXECUTABLE_NOT_ACCESSIBLE",
                              f"system units run as a dynamic user, who cannot run {target} ({closed} is "
                              "closed to other users); install rbee and its Python where every user can "
                              "read them, e.g. python3 -m venv /opt/rbee with the system's python3")


def _scope_options(settings: UnitSettings, writable: Path | None, gpus: bool) -> list[str]:
    """User scope: the data dir made writable. System scope: a dynamic user and a state dir, no
    capabilities, and the protections a user manager fails to set up (tested: 218/CAPABILITIES
    under an unprivileged one, 226/NAMESPACE under root's); no devices but the pseudo ones, plus
    the NVIDIA GPUs for units that run workers (`gpus`)."""
    if settings.user:
        return [f"ReadWritePaths={writable}"] if writable is not None else []
    return [
        "DynamicUser=yes",
        "User=rbee",
        "Group=rbee",
        f"StateDirectory={settings.data_dir.relative_to(STATE_ROOT)}",
        "StateDirectoryMode=0700",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        *(GPU_DEVICE_OPTIONS if gpus else ["PrivateDevices=yes"]),
    ]


def _output(settings: UnitSettings, name: str) -> list[str]:
    if settings.log_dir is None:
        return []
    stem = name.removesuffix(".service").replace("@", "-%i")
    return [f"StandardOutput=append:{settings.log_dir}/{stem}.log", "StandardError=inherit"]


def _seconds(value: float) -> str:
    return f"{value:g}"


def _fill(template: UnitTemplate, values: dict[str, object]) -> str:
    lines = template.substitute(values).splitlines()
    return "\n".join(line for line in lines if line != DROP) + "\n"


def _binds(template: UnitTemplate, values: dict[str, object], settings: UnitSettings) -> list[str]:
    """`BindReadOnlyPaths=` for each install folder that the unit's own sandboxing hides."""
    hardening = directives(_fill(template, {**values, "install_binds": DROP}))
    binds = read_only_binds(settings.install_paths, hardening)
    for path in binds:
        _check_path("rbee's install folder", path)
    return [f"BindReadOnlyPaths={path}" for path in binds]


def render_unit(name: str, settings: UnitSettings) -> str:
    """One unit's text for this machine."""
    timings = settings.timings
    writable = {QUEEN_UNIT: settings.data_dir, HIVE_UNIT: settings.hive_data_dir}.get(name)
    values = {
        "rbee": settings.rbee,
        "host": settings.host,
        "queen_port": settings.queen_port,
        "queen_url": settings.queen_url,
        "hive_port": settings.hive_port,
        "worker_port_start": settings.worker_port_start,
        "queen_data_dir": settings.data_dir,
        "hive_data_dir": settings.hive_data_dir,
        "token_dir": settings.token_dir,
        "worker_env_dir": settings.worker_env_dir,
        "watchdog_s": _seconds(settings.watchdog_s),
        "restart_s": _seconds(timings.restart_backoff_initial_s),
        "start_limit_interval_s": _seconds(timings.restart_window_s),
        "start_limit_burst": timings.max_restarts,
        "start_timeout_s": START_TIMEOUT_S,
        "worker_start_timeout_s": _seconds(timings.loading_timeout_s + START_TIMEOUT_S),
        "stop_timeout_s": _seconds(timings.drain_budget_s + 2 * timings.sigterm_grace_s + STOP_MARGIN_S),
        "load_failed_exit": WORKER_LOAD_FAILED,
        "wanted_by": "default.target" if settings.user else "multi-user.target",
    }
    blocks = {
        "environment": [f"Environment={k}={v}" for k, v in sorted(settings.environment.items())],
        "scope_options": _scope_options(settings, writable, gpus=name != QUEEN_UNIT),
        "output": _output(settings, name),
    }
    values.update({key: "\n".join(lines) or DROP for key, lines in blocks.items()})
    try:
        template = UnitTemplate(systemd_template(name))
    except OSError:
        raise DeployError("UNIT_TEMPLATES_MISSING", f"cannot read {SYSTEMD_DIR / name}: the rbee package "
                          "is incomplete; reinstall it") from None
    return _fill(template, {**values, "install_binds": "\n".join(_binds(template, values, settings)) or DROP})


def render_units(settings: UnitSettings) -> dict[str, str]:
    """The three units (file name → text), after checking the settings and token files."""
    check_settings(settings)
    return {name: render_unit(name, settings) for name in UNITS}
