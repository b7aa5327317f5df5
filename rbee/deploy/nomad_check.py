"""Structural checks of rbee's Nomad job files, without a Nomad server.

python-hcl2 only proves a file is valid HCL. These rules prove it is a job rbee can run: the
right job type per daemon, known stanza names (a misspelled one is reported with the name it
probably meant), an absolute rbee command with its port taken from the group's network, an
HTTP service check on the daemon's health endpoint, restart and update stanzas with
auto_revert, a kill_timeout that covers the drain, a shutdown_delay for hives, GPUs asked for
from the NVIDIA device plugin by the hive alone, and token files rendered from Nomad Variables
with mode 0600. Each problem names the file, the job > group > task it is in, an UPPER_SNAKE
code and what is wrong.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rbee.common.tunables import Timings, TunableError, load_timings, shared_environment
from rbee.deploy.nomad_hcl import (
    NomadError,
    blocks,
    duration_s,
    flag_values,
    labeled,
    parse_hcl,
    resolve,
    variable_defaults,
)
from rbee.deploy.templates import NOMAD_DIR

JOBS_DIR = NOMAD_DIR
JOB_SUFFIX = ".nomad.hcl"
DRIVERS = ("raw_exec", "exec")
STOP_SIGNALS = ("SIGTERM", "SIGINT")
SECRETS_PREFIXES = ("${NOMAD_SECRETS_DIR}/", "secrets/")
_PORT_REF = re.compile(r"^\$\{NOMAD_PORT_([A-Za-z0-9_]+)\}$")
GPU_DEVICE = "nvidia/gpu"
"""The NVIDIA device plugin's GPUs (`nvidia/gpu/<model>` picks a model); the hive reads them with NVML."""


@dataclass(frozen=True)
class Role:
    """What a Nomad job must provide for one rbee daemon."""

    job_type: str
    health_path: str
    token_flags: tuple[str, ...]
    required_flags: tuple[str, ...]
    needs_shutdown_delay: bool
    runs_workers: bool


ROLES = {
    "queen": Role("service", "/health", ("--token-file", "--hive-token-file", "--worker-token-file"),
                  ("--host", "--port", "--data-dir"), needs_shutdown_delay=False, runs_workers=False),
    "hive": Role("system", "/v1/health", ("--token-file", "--queen-token-file", "--worker-token-file"),
                 ("--host", "--port", "--data-dir", "--queen-url"), needs_shutdown_delay=True,
                 runs_workers=True),
}

# Stanza names Nomad accepts, per block kind (Nomad 1.9 job specification). Blocks without an
# entry here (env, meta, vault, spread, ...) are not looked into.
SCHEMA: dict[str, frozenset[str]] = {
    "file": frozenset({"job", "variable", "locals"}),
    "variable": frozenset({"default", "description", "type", "validation"}),
    "job": frozenset({
        "affinity", "all_at_once", "constraint", "consul", "consul_token", "datacenters", "group", "id",
        "meta", "migrate", "multiregion", "name", "namespace", "node_pool", "parameterized", "periodic",
        "priority", "region", "reschedule", "spread", "type", "ui", "update", "vault", "vault_token",
    }),
    "group": frozenset({
        "affinity", "consul", "constraint", "count", "disconnect", "ephemeral_disk", "max_client_disconnect",
        "meta", "migrate", "network", "prevent_reschedule_on_lost", "reschedule", "restart", "scaling",
        "service", "shutdown_delay", "spread", "stop_after_client_disconnect", "task", "update", "vault",
        "volume",
    }),
    "task": frozenset({
        "action", "affinity", "artifact", "config", "constraint", "consul", "csi_plugin", "dispatch_payload",
        "driver", "env", "identity", "kill_signal", "kill_timeout", "kind", "leader", "lifecycle", "logs",
        "meta", "resources", "restart", "schedule", "scaling", "service", "shutdown_delay", "template",
        "user", "vault", "volume_mount",
    }),
    "config": frozenset({
        "args", "cap_add", "cap_drop", "cgroup_v1_override", "cgroup_v2_override", "command",
        "denied_envvars", "ipc_mode", "oom_score_adj", "pid_mode", "work_dir",
    }),
    "network": frozenset({"cni", "dns", "hostname", "mode", "port"}),
    "port": frozenset({"host_network", "ignore_collision", "static", "to"}),
    "service": frozenset({
        "address", "address_mode", "canary_meta", "canary_tags", "check", "check_restart", "cluster",
        "connect", "enable_tag_override", "identity", "kind", "meta", "name", "on_update", "port",
        "provider", "tagged_addresses", "tags", "task", "weights",
    }),
    "check": frozenset({
        "address_mode", "args", "body", "check_restart", "command", "expose", "failures_before_critical",
        "failures_before_warning", "grpc_service", "grpc_use_tls", "header", "initial_status", "interval",
        "method", "name", "notes", "on_update", "path", "port", "protocol", "success_before_passing",
        "task", "timeout", "tls_server_name", "tls_skip_verify", "type",
    }),
    "check_restart": frozenset({"grace", "ignore_warnings", "limit"}),
    "restart": frozenset({"attempts", "delay", "interval", "mode", "render_templates"}),
    "update": frozenset({
        "auto_promote", "auto_revert", "canary", "health_check", "healthy_deadline", "max_parallel",
        "min_healthy_time", "progress_deadline", "stagger",
    }),
    "template": frozenset({
        "change_mode", "change_script", "change_signal", "data", "destination", "env",
        "error_on_missing_key", "gid", "left_delimiter", "once", "perms", "right_delimiter", "source",
        "splay", "uid", "wait",
    }),
    "resources": frozenset({"cores", "cpu", "device", "memory", "memory_max", "numa", "secrets"}),
    "device": frozenset({"affinity", "constraint", "count"}),
    "logs": frozenset({"disabled", "enabled", "max_file_size", "max_files"}),
    "constraint": frozenset({"attribute", "distinct_hosts", "distinct_property", "operator", "value"}),
    "reschedule": frozenset({"attempts", "delay", "delay_function", "interval", "max_delay", "unlimited"}),
    "ephemeral_disk": frozenset({"migrate", "size", "sticky"}),
    "lifecycle": frozenset({"hook", "sidecar"}),
}
LABELED = frozenset({"job", "group", "task", "port", "variable", "device"})


@dataclass(frozen=True)
class Problem:
    """One broken rule in one job file."""

    file: str
    where: str
    code: str
    message: str

    def __str__(self) -> str:
        place = f"{self.file}: {self.where}" if self.where else self.file
        return f"{place}: {self.code}: {self.message}"


@dataclass(frozen=True)
class CheckedJob:
    """The outcome of checking one job file."""

    file: str
    job_name: str | None
    job_type: str | None
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """True when no rule is broken."""
        return not self.problems


# -- rules ---------------------------------------------------------------------------------------


class _Report:
    """Collects the problems of one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, where: str, code: str, message: str) -> None:
        self.problems.append(Problem(self.file, where, code, message))


def _unknown_keys(kind: str, body: dict[str, Any], where: str, report: _Report) -> None:
    allowed = SCHEMA[kind]
    for key, value in body.items():
        if key not in allowed:
            guess = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean `{guess[0]}`?)" if guess else ""
            inside = "at the top level" if kind == "file" else f"inside `{kind}`"
            report.add(where, "UNKNOWN_STANZA", f"Nomad has no stanza `{key}` {inside}{hint}")
            continue
        if key not in SCHEMA or not isinstance(value, list | dict):
            continue
        if key == "config" and body.get("driver") not in DRIVERS:
            continue
        if key in LABELED:
            for label, inner in labeled(body, key):
                _unknown_keys(key, inner, _join(where, f"{key} {label}"), report)
        else:
            for inner in blocks(body, key):
                _unknown_keys(key, inner, _join(where, key), report)


def _join(where: str, part: str) -> str:
    return f"{where} > {part}" if where else part


def _task_role(task: dict[str, Any]) -> tuple[str | None, list[Any]]:
    config = blocks(task, "config")
    args = config[0].get("args", []) if config else []
    args = args if isinstance(args, list) else []
    role = str(args[0]) if args else None
    return role, args


def _check_task(task: dict[str, Any], group: dict[str, Any], ports: set[str],
                defaults: dict[str, Any], where: str, report: _Report) -> str | None:
    """Check one task; returns the rbee role it runs (None when it runs none)."""
    driver = task.get("driver")
    if driver is None:
        report.add(where, "MISSING_STANZA", "no `driver`; use raw_exec (or exec) to run the rbee executable")
        return None
    if driver not in DRIVERS:
        report.add(where, "WRONG_DRIVER",
                   f"driver `{driver}` cannot run the rbee executable; use raw_exec or exec")
        return None
    config = blocks(task, "config")
    if not config:
        report.add(where, "MISSING_STANZA", "no `config` block with the rbee command and its arguments")
        return None
    command = resolve(config[0].get("command"), defaults)
    if command is None:
        report.add(where, "MISSING_STANZA", "config has no `command`; give the absolute path of rbee")
    elif not isinstance(command, str) or not command.startswith("/"):
        report.add(where, "RELATIVE_COMMAND",
                   f"command `{command}` is not an absolute path; give the rbee executable's full path "
                   "(for example /opt/rbee/bin/rbee)")
    role, args = _task_role(task)
    if role not in ROLES:
        report.add(where, "UNKNOWN_ROLE",
                   f"task runs `rbee {role or ''}`; rbee's Nomad jobs run `rbee queen` or `rbee hive`")
        return None
    spec = ROLES[role]
    flags = flag_values(args[1:])
    for flag in spec.required_flags + spec.token_flags:
        if flag not in flags or flags[flag] is None:
            report.add(where, "MISSING_FLAG", f"`rbee {role}` needs `{flag}` in config.args")
    port = flags.get("--port")
    if port is not None and not ((match := _PORT_REF.match(port)) and match.group(1) in ports):
        report.add(where, "PORT_NOT_FROM_NETWORK",
                   f"--port is `{port}`; use ${{NOMAD_PORT_<label>}} of a port in the group's network block "
                   f"(ports: {', '.join(sorted(ports)) or 'none'})")
    _check_tokens(task, flags, spec, where, report)
    _check_stop(task, defaults, where, report)
    _check_devices(task, role, defaults, where, report)
    if spec.needs_shutdown_delay:
        delay = duration_s(task.get("shutdown_delay", group.get("shutdown_delay")))
        if not delay:
            report.add(where, "MISSING_SHUTDOWN_DELAY",
                       f"no shutdown_delay (group or task): service discovery must drop the {role} "
                       "before it is told to stop")
    return role


def _check_tokens(task: dict[str, Any], flags: dict[str, str | None], spec: Role, where: str,
                  report: _Report) -> None:
    templates = {}
    for template in blocks(task, "template"):
        destination = str(template.get("destination", ""))
        templates[_secrets_name(destination) or destination] = template
    for flag in spec.token_flags:
        value = flags.get(flag)
        if value is None:
            continue
        name = _secrets_name(value)
        if name is None:
            report.add(where, "TOKEN_NOT_IN_SECRETS",
                       f"{flag} is `{value}`; token files belong in the task's secrets folder "
                       "(${NOMAD_SECRETS_DIR}/NAME), rendered there by a template")
            continue
        template = templates.get(name)
        if template is None:
            report.add(where, "MISSING_TEMPLATE",
                       f"{flag} reads secrets/{name} but no template renders it "
                       f"(destination = \"secrets/{name}\")")
            continue
        _check_template(template, name, where, report)


def _secrets_name(path: str) -> str | None:
    for prefix in SECRETS_PREFIXES:
        if path.startswith(prefix) and "/" not in path[len(prefix):] and path[len(prefix):]:
            return path[len(prefix):]
    return None


def _check_template(template: dict[str, Any], name: str, where: str, report: _Report) -> None:
    at = _join(where, f"template secrets/{name}")
    perms = template.get("perms")
    if perms is None:
        report.add(at, "TEMPLATE_PERMS",
                   "no `perms`: Nomad writes 0644 and rbee refuses token files others can read; "
                   "set perms = \"600\"")
    else:
        try:
            mode = int(str(perms), 8)
        except ValueError:
            mode = None
        if mode is None or mode & 0o077:
            report.add(at, "TEMPLATE_PERMS",
                       f"perms `{perms}` lets group or others read the token; set perms = \"600\"")
    if "nomadVar" not in str(template.get("data", "")):
        report.add(at, "TOKEN_SOURCE", "the token is not read from a Nomad Variable (nomadVar in `data`)")


def _check_stop(task: dict[str, Any], defaults: dict[str, Any], where: str, report: _Report) -> None:
    signal = task.get("kill_signal")
    if signal is not None and signal not in STOP_SIGNALS:
        report.add(where, "WRONG_KILL_SIGNAL",
                   f"kill_signal `{signal}` does not make rbee drain; use SIGTERM")
    env = {key: str(resolve(value, defaults)) for body in blocks(task, "env") for key, value in body.items()}
    try:
        tunables = shared_environment({key: value for key, value in env.items() if key.startswith("RBEE_")})
        timings = load_timings(tunables)
    except TunableError as exc:
        report.add(where, "BAD_TUNABLE", str(exc))
        timings = Timings()
    needed = timings.drain_budget_s + timings.sigterm_grace_s
    raw = resolve(task.get("kill_timeout"), defaults)
    if raw is None:
        report.add(where, "KILL_TIMEOUT_TOO_SHORT",
                   f"no kill_timeout: Nomad's default 5s cuts the drain short; set at least {needed:g}s "
                   f"(drain budget {timings.drain_budget_s:g}s + SIGTERM grace {timings.sigterm_grace_s:g}s)")
        return
    seconds = duration_s(raw)
    if seconds is None:
        report.add(where, "BAD_DURATION", f"kill_timeout `{raw}` is not a duration such as \"45s\"")
    elif seconds < needed:
        report.add(where, "KILL_TIMEOUT_TOO_SHORT",
                   f"kill_timeout {raw} is shorter than the drain budget ({timings.drain_budget_s:g}s) plus "
                   f"the SIGTERM grace ({timings.sigterm_grace_s:g}s); set at least {needed:g}s")


def _check_devices(task: dict[str, Any], role: str, defaults: dict[str, Any], where: str,
                   report: _Report) -> None:
    """Devices only for the daemon that runs workers: NVIDIA GPUs, at least one of each asked for."""
    devices = [item for resources in blocks(task, "resources") for item in labeled(resources, "device")]
    for name, device in devices:
        at = _join(where, f'device "{name}"')
        if not ROLES[role].runs_workers:
            report.add(at, "DEVICE_UNUSED", f"the {role} runs no model; only the hive's workers use GPUs")
            continue
        if name != GPU_DEVICE and not name.startswith(GPU_DEVICE + "/"):
            report.add(at, "NOT_AN_NVIDIA_GPU", f"the hive reads GPUs through NVML; ask for "
                       f"`{GPU_DEVICE}` (or `{GPU_DEVICE}/<model>`) from the NVIDIA device plugin")
        count = resolve(device.get("count", 1), defaults)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            report.add(at, "BAD_DEVICE_COUNT", f"count `{count}` is not a whole number of GPUs, at least 1")


def _check_services(role: str, group: dict[str, Any], tasks: list[dict[str, Any]], ports: set[str],
                    where: str, report: _Report) -> None:
    services = blocks(group, "service") + [s for task in tasks for s in blocks(task, "service")]
    path = ROLES[role].health_path
    if not services:
        report.add(where, "MISSING_STANZA",
                   f"no service block: Nomad cannot health-check the {role} on {path}")
        return
    seen: list[str] = []
    for service in services:
        at = _join(where, f"service {service.get('name', '')}".strip())
        label = service.get("port")
        if label is None or str(label) not in ports:
            report.add(at, "UNKNOWN_PORT",
                       f"service port `{label}` is not a port of the group's network block")
        for check in blocks(service, "check"):
            seen.append(f"{check.get('type')} {check.get('path', '')}".strip())
            if check.get("type") == "http" and check.get("path") == path:
                for key in ("interval", "timeout"):
                    if duration_s(check.get(key)) is None:
                        report.add(_join(at, "check"), "MISSING_STANZA",
                                   f"the health check has no valid `{key}`")
                return
    found = f" (found: {', '.join(seen)})" if seen else ""
    report.add(where, "MISSING_HEALTH_CHECK", f"no service check of type http on {path}{found}")


def _check_group(group: dict[str, Any], job: dict[str, Any], defaults: dict[str, Any],
                 where: str, report: _Report) -> set[str]:
    """Check one group and its tasks; returns the rbee roles its tasks run."""
    tasks = labeled(group, "task")
    if not tasks:
        report.add(where, "MISSING_STANZA", "group has no task")
        return set()
    ports = {label for network in blocks(group, "network") for label, _ in labeled(network, "port")}
    if not blocks(group, "restart") and not all(blocks(task, "restart") for _, task in tasks):
        report.add(where, "MISSING_STANZA",
                   "no restart block (group or task): say how often Nomad restarts rbee")
    update = {key: value for body in blocks(job, "update") + blocks(group, "update")
              for key, value in body.items()}
    if not update:
        report.add(where, "MISSING_STANZA", "no update block (job or group): rolling upgrades need one")
    elif update.get("auto_revert") is not True:
        report.add(where, "NO_AUTO_REVERT", "update has no `auto_revert = true`: a failed upgrade would stay")
    roles = set()
    for task_name, task in tasks:
        role = _check_task(task, group, ports, defaults, _join(where, f"task {task_name}"), report)
        if role is not None:
            roles.add(role)
            _check_services(role, group, [task for _, task in tasks], ports, where, report)
    return roles


def _check_document(document: dict[str, Any], report: _Report) -> tuple[str | None, str | None]:
    _unknown_keys("file", document, "", report)
    jobs = labeled(document, "job")
    if len(jobs) != 1:
        report.add("", "MISSING_STANZA" if not jobs else "MANY_JOBS",
                   f"a job file holds exactly one job block (found {len(jobs)})")
        return None, None
    name, job = jobs[0]
    where = f"job {name}"
    defaults = variable_defaults(document)
    job_type = job.get("type")
    if not resolve(job.get("datacenters"), defaults):
        report.add(where, "MISSING_STANZA", "no `datacenters`: say where the job may run")
    groups = labeled(job, "group")
    if not groups:
        report.add(where, "MISSING_STANZA", "job has no group")
    roles: set[str] = set()
    for group_name, group in groups:
        roles |= _check_group(group, job, defaults, _join(where, f"group {group_name}"), report)
    for role in sorted(roles):
        wanted = ROLES[role].job_type
        if job_type is None:
            report.add(where, "MISSING_STANZA", f"no `type`; the {role} runs as a {wanted} job")
        elif job_type != wanted:
            report.add(where, "WRONG_JOB_TYPE",
                       f"job type is `{job_type}`; the {role} runs as a {wanted} job")
    return name, job_type


def check_text(text: str, file: str) -> CheckedJob:
    """Check the text of one job file; `file` names it in problems."""
    report = _Report(file)
    try:
        document = parse_hcl(text)
    except NomadError as exc:
        report.add("", exc.code, exc.message)
        return CheckedJob(file, None, None, tuple(report.problems))
    name, job_type = _check_document(document, report)
    return CheckedJob(file, name, job_type, tuple(report.problems))


def job_files(directory: Path) -> list[Path]:
    """The `*.nomad.hcl` files of a folder, sorted; a folder without any raises NomadError."""
    if not directory.is_dir():
        raise NomadError("JOBS_DIR_NOT_FOUND", f"{directory} is not a folder")
    files = sorted(directory.glob(f"*{JOB_SUFFIX}"))
    if not files:
        raise NomadError("NO_JOB_FILES", f"no *{JOB_SUFFIX} files in {directory}")
    return files


def job_name_of(path: Path) -> str:
    """The name a job file is selected by (`rbee-queen` for rbee-queen.nomad.hcl)."""
    return path.name.removesuffix(JOB_SUFFIX)


def check_files(files: list[Path]) -> Iterator[CheckedJob]:
    """Check each file in turn."""
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            yield CheckedJob(str(path), None, None, (Problem(str(path), "", "UNREADABLE", str(exc)),))
            continue
        yield check_text(text, str(path))
