"""The structural checker of rbee's Nomad jobs: the shipped jobs pass, each kind of breakage is caught."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rbee.deploy.nomad_check import JOBS_DIR, check_text, job_files
from rbee.deploy.nomad_hcl import duration_s, flag_values

QUEEN = JOBS_DIR / "rbee-queen.nomad.hcl"
HIVE = JOBS_DIR / "rbee-hive.nomad.hcl"
QUEEN_TASK = "job rbee-queen > group queen > task queen"
HIVE_TASK = "job rbee-hive > group hive > task hive"
GPU_COUNT_DEFAULT = '  default     = 1\n}\n\nvariable "cpu_mhz" {'


def _without_block(name: str, indent: int) -> Callable[[str], str]:
    """A breakage that deletes the first `name { … }` block written at `indent` spaces."""
    pad = " " * indent
    pattern = re.compile(rf"\n{pad}{name} \{{.*?\n{pad}\}}\n", re.S)
    return lambda text: pattern.sub("\n", text, count=1)


@dataclass(frozen=True)
class Breakage:
    """One way to break a shipped job, and the problem the checker must report for it."""

    file: Path
    old: str | None
    new: str | Callable[[str], str]
    code: str
    where: str
    words: str


BREAKAGES = {
    "misspelled group": Breakage(
        QUEEN, 'group "queen" {', 'grup "queen" {', "UNKNOWN_STANZA", "job rbee-queen",
        "`grup` inside `job` (did you mean `group`?)"),
    "misspelled kill_timeout": Breakage(
        HIVE, "kill_timeout = ", "kill_timout = ", "UNKNOWN_STANZA", HIVE_TASK,
        "did you mean `kill_timeout`?"),
    "misspelled auto_revert": Breakage(
        QUEEN, "auto_revert       = true", "auto_revrt        = true", "NO_AUTO_REVERT",
        "job rbee-queen > group queen", "auto_revert = true"),
    "misspelled top-level variable": Breakage(
        HIVE, 'variable "port" {', 'varable "port" {', "UNKNOWN_STANZA", "",
        "at the top level (did you mean `variable`?)"),
    "missing health check": Breakage(
        QUEEN, None, _without_block("check", 6), "MISSING_HEALTH_CHECK", "job rbee-queen > group queen",
        "no service check of type http on /health"),
    "check on the wrong path": Breakage(
        HIVE, 'path     = "/v1/health"', 'path     = "/healthz"', "MISSING_HEALTH_CHECK",
        "job rbee-hive > group hive", "on /v1/health (found: http /healthz)"),
    "kill_timeout too short": Breakage(
        HIVE, 'kill_timeout = "45s"', 'kill_timeout = "30s"', "KILL_TIMEOUT_TOO_SHORT", HIVE_TASK,
        "kill_timeout 30s is shorter than the drain budget (30s) plus the SIGTERM grace (10s); "
        "set at least 40s"),
    "kill_timeout missing": Breakage(
        QUEEN, 'kill_timeout = "45s"', "", "KILL_TIMEOUT_TOO_SHORT", QUEEN_TASK, "no kill_timeout"),
    "longer drain budget": Breakage(
        QUEEN, 'RBEE_DRAIN_BUDGET_S  = "30"', 'RBEE_DRAIN_BUDGET_S  = "120"', "KILL_TIMEOUT_TOO_SHORT",
        QUEEN_TASK, "set at least 130s"),
    "relative command": Breakage(
        QUEEN, 'default     = "/opt/rbee/bin/rbee"', 'default     = "rbee"', "RELATIVE_COMMAND", QUEEN_TASK,
        "command `rbee` is not an absolute path"),
    "hive as a service job": Breakage(
        HIVE, 'type        = "system"', 'type        = "service"', "WRONG_JOB_TYPE", "job rbee-hive",
        "job type is `service`; the hive runs as a system job"),
    "queen as a system job": Breakage(
        QUEEN, 'type        = "service"', 'type        = "system"', "WRONG_JOB_TYPE", "job rbee-queen",
        "the queen runs as a service job"),
    "template without perms": Breakage(
        QUEEN, '        perms         = "600"\n', "", "TEMPLATE_PERMS",
        f"{QUEEN_TASK} > template secrets/queen-token", "no `perms`"),
    "template readable by others": Breakage(
        HIVE, 'perms         = "600"', 'perms         = "644"', "TEMPLATE_PERMS",
        f"{HIVE_TASK} > template secrets/hive-token", "perms `644`"),
    "token not from a Nomad Variable": Breakage(
        HIVE, '{{- with nomadVar "${var.tokens_path}" }}{{ .queen_token }}{{ end }}',
        "changeme-changeme-changeme", "TOKEN_SOURCE", f"{HIVE_TASK} > template secrets/queen-token",
        "Nomad Variable"),
    "token file outside secrets": Breakage(
        QUEEN, '"${NOMAD_SECRETS_DIR}/worker-token"', '"/etc/rbee/worker-token"', "TOKEN_NOT_IN_SECRETS",
        QUEEN_TASK, "--worker-token-file is `/etc/rbee/worker-token`"),
    "token flag missing": Breakage(
        QUEEN, '"--hive-token-file", "${NOMAD_SECRETS_DIR}/hive-token",', "", "MISSING_FLAG", QUEEN_TASK,
        "needs `--hive-token-file`"),
    "no shutdown_delay on the hive": Breakage(
        HIVE, 'shutdown_delay = "5s"', "", "MISSING_SHUTDOWN_DELAY", HIVE_TASK,
        "service discovery must drop the hive"),
    "docker driver": Breakage(
        QUEEN, 'driver = "raw_exec"', 'driver = "docker"', "WRONG_DRIVER", QUEEN_TASK, "driver `docker`"),
    "literal port": Breakage(
        HIVE, '"--port", "${NOMAD_PORT_http}"', '"--port", "9200"', "PORT_NOT_FROM_NETWORK", HIVE_TASK,
        "--port is `9200`"),
    "service on an unknown port": Breakage(
        QUEEN, 'port     = "http"', 'port     = "api"', "UNKNOWN_PORT",
        "job rbee-queen > group queen > service rbee-queen", "`api`"),
    "no restart block": Breakage(
        HIVE, None, _without_block("restart", 4), "MISSING_STANZA", "job rbee-hive > group hive",
        "no restart block"),
    "kill signal that does not drain": Breakage(
        QUEEN, 'kill_signal  = "SIGTERM"', 'kill_signal  = "SIGKILL"', "WRONG_KILL_SIGNAL", QUEEN_TASK,
        "kill_signal `SIGKILL`"),
    "queen url missing": Breakage(
        HIVE, '"--queen-url", "${RBEE_QUEEN_URL}",', "", "MISSING_FLAG", HIVE_TASK, "needs `--queen-url`"),
    "a GPU of another vendor": Breakage(
        HIVE, 'device "nvidia/gpu" {', 'device "amd/gpu" {', "NOT_AN_NVIDIA_GPU",
        f'{HIVE_TASK} > device "amd/gpu"', "the hive reads GPUs through NVML"),
    "no GPU asked for": Breakage(
        HIVE, GPU_COUNT_DEFAULT, GPU_COUNT_DEFAULT.replace("= 1", "= 0"), "BAD_DEVICE_COUNT",
        f'{HIVE_TASK} > device "nvidia/gpu"', "count `0`"),
    "misspelled device count": Breakage(
        HIVE, "count = var.gpus", "cout = var.gpus", "UNKNOWN_STANZA",
        f"{HIVE_TASK} > resources > device nvidia/gpu", "did you mean `count`?"),
    "a GPU for the queen": Breakage(
        QUEEN, "        memory = 512\n", '        memory = 512\n        device "nvidia/gpu" {}\n',
        "DEVICE_UNUSED", f'{QUEEN_TASK} > device "nvidia/gpu"', "the queen runs no model"),
}


def _broken(file: Path, old: str | None, new: str | Callable[[str], str]) -> str:
    text = file.read_text()
    if callable(new):
        changed = new(text)
    else:
        assert old in text, f"{old!r} is not in {file.name}: the breakage would test nothing"
        changed = text.replace(old, new, 1)
    assert changed != text
    return changed


@pytest.mark.parametrize("path", [QUEEN, HIVE], ids=lambda p: p.name)
def test_shipped_jobs_pass(path: Path) -> None:
    result = check_text(path.read_text(), str(path))
    assert result.ok, "\n".join(map(str, result.problems))
    assert result.job_type == {"rbee-queen.nomad.hcl": "service", "rbee-hive.nomad.hcl": "system"}[path.name]


def test_the_jobs_folder_holds_exactly_the_two_jobs() -> None:
    assert [path.name for path in job_files(JOBS_DIR)] == ["rbee-hive.nomad.hcl", "rbee-queen.nomad.hcl"]


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_a_broken_job_fails_with_a_precise_message(name: str) -> None:
    breakage = BREAKAGES[name]
    file = breakage.file
    result = check_text(_broken(file, breakage.old, breakage.new), f"broken/{file.name}")
    assert not result.ok
    matching = [p for p in result.problems if p.code == breakage.code and p.where == breakage.where]
    assert matching, "\n".join(map(str, result.problems))
    assert any(breakage.words in p.message for p in matching), "\n".join(map(str, matching))
    assert all(str(p).startswith(f"broken/{file.name}: ") for p in result.problems)


def test_a_syntax_error_names_its_line() -> None:
    text = QUEEN.read_text()
    line = text[:text.index("count = 1")].count("\n") + 1
    result = check_text(text.replace("count = 1", "count = ", 1), "syntax.nomad.hcl")
    assert [(p.code, p.where) for p in result.problems] == [("HCL_SYNTAX", "")]
    assert result.problems[0].message.startswith(f"line {line}, column "), result.problems[0]


def test_two_jobs_in_one_file_are_refused() -> None:
    text = QUEEN.read_text()
    job = text[text.index('job "rbee-queen"'):]
    result = check_text(text + job.replace('job "rbee-queen"', 'job "rbee-queen-2"'), "two.nomad.hcl")
    assert [p.code for p in result.problems] == ["MANY_JOBS"]


@pytest.mark.parametrize(("text", "seconds"),
                         [("45s", 45.0), ("1m30s", 90.0), ("500ms", 0.5), ("2h", 7200.0)])
def test_go_durations_are_read(text: str, seconds: float) -> None:
    assert duration_s(text) == seconds


@pytest.mark.parametrize("text", ["45", "s", "45 s", "1x", "", None, 45])
def test_things_that_are_not_durations_are_refused(text) -> None:
    assert duration_s(text) is None


def test_flags_are_read_with_and_without_values() -> None:
    assert flag_values(["--port", "1", "--no-local-hive", "--host=h", "--data-dir", "d"]) == {
        "--port": "1", "--no-local-hive": None, "--host": "h", "--data-dir": "d"}


def _rbee_check(jobs_dir: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "rbee", "deploy", "nomad", "--check", "--jobs-dir", str(jobs_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_cli_check_exits_1_and_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "rbee-queen.nomad.hcl").write_text(QUEEN.read_text())
    (tmp_path / "rbee-hive.nomad.hcl").write_text(
        _broken(HIVE, 'kill_timeout = "45s"', 'kill_timeout = "5s"'))
    result = _rbee_check(tmp_path)
    assert result.returncode == 1, result
    assert f"ok: {tmp_path}/rbee-queen.nomad.hcl (job rbee-queen, type service)" in result.stdout
    assert f"{tmp_path}/rbee-hive.nomad.hcl: {HIVE_TASK}: KILL_TIMEOUT_TOO_SHORT" in result.stderr
    assert "NOMAD_CHECK_FAILED: 1 problem(s) in 1 of 2 job file(s)" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_check_refuses_a_folder_without_jobs(tmp_path: Path) -> None:
    result = _rbee_check(tmp_path)
    assert result.returncode == 1
    assert "error: NO_JOB_FILES" in result.stderr
