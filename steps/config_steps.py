"""Steps about daemon config files: start from a file, precedence, `rbee config check`, SIGHUP reload."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from behave import given, then, when

from rbee.common.ports import free_port
from rbee.testing.cluster import Daemon, http_json, wait_until
from rbee.testing.http_client import request

ROOT = Path(__file__).resolve().parent.parent
HEALTH = {"queen": "/health", "hive": "/v1/health"}
START_TIMEOUT_S = 30.0


def _write_config(context) -> None:
    daemon, settings = context.config_daemon, context.config_settings
    context.config_file.write_text(yaml.safe_dump({daemon: settings}, sort_keys=False))


def _new_config(context, daemon: str, extra: dict | None = None) -> None:
    context.config_daemon = daemon
    context.config_file = context.workdir / f"{daemon}.yaml"
    context.config_settings = {"port": free_port(), "data_dir": str(context.workdir / "data"),
                               **(extra or {})}
    context.ports = {"file": context.config_settings["port"]}
    _write_config(context)


def _flow(text: str) -> dict:
    """`key: value, key: value` as a mapping (YAML flow style)."""
    return yaml.safe_load("{" + text + "}")


def _url(port: int, daemon: str = "queen") -> str:
    return f"http://127.0.0.1:{port}{HEALTH[daemon]}"


def _start(context, daemon: str, flags: list[str] | None = None, env: dict | None = None) -> None:
    """Start the daemon from the config file and wait until one of the scenario's ports answers."""
    port = context.config_settings["port"]
    process = Daemon([daemon, "--config", str(context.config_file), *(flags or [])],
                     f"http://127.0.0.1:{port}", HEALTH[daemon], context.workdir / f"{daemon}.log")
    context.daemons.append(process)
    process.start(env={**context.env, **(env or {})})
    answering = lambda: any(http_json(_url(p, daemon))[0] == 200 for p in context.ports.values())  # noqa: E731
    assert wait_until(answering, START_TIMEOUT_S, 0.1), process.log_tail()
    setattr(context, daemon, process)
    if daemon == "queen":
        context.queen_url = process.base_url
    else:
        context.hive_url = process.base_url


@given("a {daemon} config file on a free port")
def config_file(context, daemon: str) -> None:
    _new_config(context, daemon)


@given('the queen config file also sets "{settings}"')
def config_also_sets(context, settings: str) -> None:
    context.config_settings.update(_flow(settings))
    _write_config(context)


@given("a queen started from a config file")
def queen_from_file(context) -> None:
    _new_config(context, "queen")
    _start(context, "queen")


@given('a queen started from a config file that sets "{settings}"')
def queen_from_file_with(context, settings: str) -> None:
    _new_config(context, "queen", _flow(settings))
    _start(context, "queen")


@when("I start the {daemon} with that config file")
def start_from_file(context, daemon: str) -> None:
    _start(context, daemon)


@when("I start the queen with that config file and the port also given by {others}")
def start_with_overrides(context, others: str) -> None:
    env, flags = {}, []
    if "RBEE_QUEEN_PORT" in others:
        context.ports["environment"] = free_port()
        env["RBEE_QUEEN_PORT"] = str(context.ports["environment"])
    if "--port" in others:
        context.ports["flag"] = free_port()
        flags = ["--port", str(context.ports["flag"])]
    _start(context, "queen", flags, env)


@when("I start `rbee queen` with that config file and wait for it to exit")
def start_and_exit(context) -> None:
    context.result = subprocess.run(
        [sys.executable, "-m", "rbee", "queen", "--config", str(context.config_file)],
        env={**os.environ, **context.env}, capture_output=True, text=True, timeout=60, check=False,
    )


@then("the {daemon} serves on the {whose}'s port only")
@then("the {daemon} serves on the {whose}'s first port only")
def serves_on(context, daemon: str, whose: str) -> None:
    answers = {name: http_json(_url(port, daemon))[0] for name, port in context.ports.items()}
    assert answers == {name: 200 if name == whose else 0 for name in context.ports}, answers


@then("nothing answers on the file's port and no data dir was created")
def nothing_started(context) -> None:
    assert http_json(_url(context.ports["file"]))[0] == 0
    assert not Path(context.config_settings["data_dir"]).exists()


@then("the queen keeps its audit log in the configured data dir")
def audit_in_data_dir(context) -> None:
    assert list((Path(context.config_settings["data_dir"]) / "audit").glob("audit-*.jsonl"))


# --- rbee config check ----------------------------------------------------------------------

def _check(context, path: str) -> None:
    context.result = subprocess.run([sys.executable, "-m", "rbee", "config", "check", path],
                                    cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    context.exit_code = context.result.returncode


@given('a config file "{name}" holding:')
def config_text(context, name: str) -> None:
    context.config_file = context.workdir / name
    context.config_file.write_text(context.text + "\n")


@when('I run `rbee config check` on "{path}"')
def check_path(context, path: str) -> None:
    _check(context, path)


@when("I run `rbee config check` on that file")
def check_that_file(context) -> None:
    _check(context, str(context.config_file))


@then('stdout says "{text}"')
def stdout_says(context, text: str) -> None:
    assert context.result.stdout.strip() == text, context.result


@then("stderr lists exactly these problems of that file:")
def problems_listed(context) -> None:
    lines = [line.strip() for line in context.result.stderr.splitlines()[1:]]
    assert len(lines) == len(context.table.rows), context.result.stderr
    for row in context.table:
        expected = f"{context.config_file}:{row['line']}: {row['key']}: {row['problem']}"
        assert any(line.startswith(expected) for line in lines), (expected, context.result.stderr)


# --- SIGHUP ---------------------------------------------------------------------------------

def _reload_records(context) -> list[dict]:
    records = []
    for path in sorted((Path(context.config_settings["data_dir"]) / "audit").glob("audit-*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["event"] == "config.reload" and r.get("what") == "config"]


def _edit_and_reload(context, settings: dict) -> None:
    before = len(_reload_records(context))
    context.config_settings.update(settings)
    _write_config(context)
    os.kill(context.queen.pid, signal.SIGHUP)
    assert wait_until(lambda: len(_reload_records(context)) > before, 10, 0.05), context.queen.log_tail()


@when('the queen\'s config file is edited to "{settings}" and the queen gets SIGHUP')
def edit_and_reload(context, settings: str) -> None:
    _edit_and_reload(context, _flow(settings))


@when("the queen's config file is edited to another free port and the queen gets SIGHUP")
def move_port_and_reload(context) -> None:
    context.ports["new"] = free_port()
    _edit_and_reload(context, {"port": context.ports["new"]})


@when("I call GET {path} on the queen {times:d} times in a row")
def call_in_a_row(context, path: str, times: int) -> None:
    context.answers = [request("GET", f"{context.queen_url}{path}") for _ in range(times)]


@then("the answers are {statuses}")
def answers_are(context, statuses: str) -> None:
    assert [a.status for a in context.answers] == [int(s) for s in statuses.split(", ")], \
        [(a.status, a.body[:200]) for a in context.answers]


@then('the queen\'s last config reload applied "{key}" and needed no restart')
def last_reload_applied(context, key: str) -> None:
    record = _reload_records(context)[-1]
    assert record["ok"] and key in record["applied"] and record["restart_needed"] == [], record


@then('the queen\'s last config reload applied nothing and needed a restart for "{key}"')
def last_reload_restart(context, key: str) -> None:
    record = _reload_records(context)[-1]
    assert record["ok"] and record["applied"] == [] and record["restart_needed"] == [key], record


@then("the queen's log has no INFO line")
def no_info_line(context) -> None:
    assert not re.search(r" queen INFO ", context.queen.log_path.read_text()), context.queen.log_tail()


@then('the queen\'s log reports "{text}"')
def log_reports(context, text: str) -> None:
    assert wait_until(lambda: text in context.queen.log_path.read_text(), 5, 0.05), context.queen.log_tail()
