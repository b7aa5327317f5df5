"""Steps running rbee daemons as units of a real systemd user manager."""

from __future__ import annotations

import sys

from behave import given, then, when

from rbee.common.ports import WORKER_PORT_BLOCK, free_port
from rbee.testing import systemd_user
from rbee.testing.cluster import alive, http_json, wait_until
from steps.common import start_generation

UNIT = "rbee-worker-test.service"


@given("a systemd user manager")
def manager(context) -> None:
    assert systemd_user.available(), "systemd is not installed (make test installs it)"
    context.manager = systemd_user.UserManager().start()
    context.add_cleanup(context.manager.stop)


def _unit(context, name: str, args: str, service_lines: str = "WatchdogSec=10") -> str:
    log = context.workdir / f"{name}.log"
    environment = "\n".join(f'Environment="{k}={v}"' for k, v in sorted(context.env.items()))
    context.manager.install_unit(name, f"""[Unit]
Description={name} under test

[Service]
Type=notify
NotifyAccess=main
ExecStart={sys.executable} -m rbee {args}
{environment}
{service_lines}
TimeoutStopSec=30
StandardOutput=append:{log}
StandardError=append:{log}
""")
    return name


@given("a Type=notify unit running an rbee hive")
def hive_unit(context) -> None:
    context.unit_hive_port = free_port()
    _unit(context, "rbee-hive-test.service",
          f"hive --port {context.unit_hive_port} --data-dir {context.workdir / 'unit-hive'}"
          f" --worker-port-start {free_port(block=WORKER_PORT_BLOCK)}")


@given("a Type=notify unit running an rbee queen that uses that hive")
def queen_unit(context) -> None:
    _unit(context, "rbee-queen-test.service",
          f"queen --port {free_port()} --hive-port {context.unit_hive_port}"
          f" --data-dir {context.workdir / 'unit-queen'}")


@when("I start both units")
def start_both(context) -> None:
    for unit in ("rbee-hive-test.service", "rbee-queen-test.service"):
        result = context.manager.systemctl("start", unit, check=False)
        assert result.returncode == 0, (unit, result.stderr)
        assert context.manager.show(unit, "ActiveState") == "active", unit


@then('the hive unit\'s status line reads "{text}"')
def hive_status(context, text: str) -> None:
    assert context.manager.show("rbee-hive-test.service", "StatusText") == text


@then('the queen unit\'s status line mentions "{text}"')
def queen_status(context, text: str) -> None:
    assert text in context.manager.show("rbee-queen-test.service", "StatusText")


@when("I stop both units")
def stop_both(context) -> None:
    context.unit_pids = [
        int(context.manager.show(u, "MainPID")) for u in ("rbee-queen-test.service", "rbee-hive-test.service")
    ]
    for unit in ("rbee-queen-test.service", "rbee-hive-test.service"):
        context.manager.systemctl("stop", unit)


@then("both units are inactive and no rbee process is left in them")
def both_inactive(context) -> None:
    for unit in ("rbee-queen-test.service", "rbee-hive-test.service"):
        assert context.manager.show(unit, "ActiveState") == "inactive", unit
        assert context.manager.show(unit, "Result") == "success", context.manager.show(unit, "Result")
    assert not any(alive(pid) for pid in context.unit_pids), context.unit_pids


@given("a Type=notify unit running an rbee worker with the tiny model")
def worker_unit(context) -> None:
    port = free_port()
    context.unit_worker_url = f"http://127.0.0.1:{port}"
    _unit(
        context,
        UNIT,
        f"worker --model {context.tiny_model} --port {port} --worker-id unit-test --slots 1",
        "WatchdogSec=2\nRestart=on-watchdog\nRestartSec=0.5",
    )


@when("I start the unit")
def start_unit(context) -> None:
    result = context.manager.systemctl("start", UNIT, check=False)
    assert result.returncode == 0, (result.stderr, context.manager.show(UNIT, "Result"))


def _ready(context) -> bool:
    return http_json(f"{context.unit_worker_url}/v1/ready")[0] == 200


@then("the unit is active and its worker answers its readiness check")
def unit_active(context) -> None:
    assert context.manager.show(UNIT, "ActiveState") == "active"
    assert _ready(context), "READY=1 came before the model was loaded"


@then('the unit\'s status line reads "{text}"')
def status_line(context, text: str) -> None:
    assert wait_until(lambda: context.manager.show(UNIT, "StatusText") == text, 5.0), (
        context.manager.show(UNIT, "StatusText")
    )


@when("a generation is started on the unit's worker")
def unit_generation(context) -> None:
    start_generation(context, context.unit_worker_url)


@then("systemd restarts the unit within {seconds:d} seconds")
def restarted(context, seconds: int) -> None:
    assert wait_until(lambda: int(context.manager.show(UNIT, "NRestarts") or 0) >= 1, seconds, 0.2), (
        context.manager.show(UNIT, "NRestarts")
    )


@then("the unit's worker answers its readiness check again")
def ready_again(context) -> None:
    assert wait_until(lambda: _ready(context), 20.0, 0.1)
