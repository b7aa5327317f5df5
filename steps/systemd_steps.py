"""Steps running rbee daemons as units of a real systemd user manager."""

from __future__ import annotations

import sys

from behave import given, then, when

from rbee.common.ports import ephemeral_port
from rbee.testing import systemd_user
from rbee.testing.cluster import http_json, wait_until
from rbee.testing.http_client import EventStream

UNIT = "rbee-worker-test.service"


@given("a systemd user manager")
def manager(context) -> None:
    assert systemd_user.available(), "systemd is not installed (make test installs it)"
    context.manager = systemd_user.UserManager().start()
    context.add_cleanup(context.manager.stop)


@given("a Type=notify unit running an rbee worker with the tiny model")
def worker_unit(context) -> None:
    port = ephemeral_port()
    context.unit_worker_url = f"http://127.0.0.1:{port}"
    log = context.workdir / "unit-worker.log"
    environment = "\n".join(f'Environment="{k}={v}"' for k, v in sorted(context.env.items()))
    command = (
        f"{sys.executable} -m rbee worker --model {context.tiny_model} --port {port}"
        " --worker-id unit-test --slots 1"
    )
    context.manager.install_unit(UNIT, f"""[Unit]
Description=rbee worker under test

[Service]
Type=notify
NotifyAccess=main
ExecStart={command}
{environment}
WatchdogSec=2
Restart=on-watchdog
RestartSec=0.5
TimeoutStopSec=10
StandardOutput=append:{log}
StandardError=append:{log}
""")


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
    body = {"prompt": "Once", "max_tokens": 50, "ignore_eos": True}
    stream = EventStream(f"{context.unit_worker_url}/v1/inference", body, timeout=30).open()
    context.streams.append(stream)
    assert stream.status == 200


@then("systemd restarts the unit within {seconds:d} seconds")
def restarted(context, seconds: int) -> None:
    assert wait_until(lambda: int(context.manager.show(UNIT, "NRestarts") or 0) >= 1, seconds, 0.2), (
        context.manager.show(UNIT, "NRestarts")
    )


@then("the unit's worker answers its readiness check again")
def ready_again(context) -> None:
    assert wait_until(lambda: _ready(context), 20.0, 0.1)
