"""Steps that start real daemons on free loopback ports."""

from __future__ import annotations

from behave import given

from rbee.testing.cluster import hive_daemon, http_json, queen_daemon, wait_until, worker_daemon
from steps.common import started

LONG_CONTEXT = ["--worker-ctx-size", "8192"]


@given('daemons start with {name} set to "{value}"')
def daemon_env(context, name: str, value: str) -> None:
    context.env[name] = value.replace("{workdir}", str(context.workdir))


def start_queen(context, *flags: str) -> None:
    """Start a queen (and its local hive) whose workers have a long context, plus `flags`."""
    context.queen = started(context, queen_daemon(context.workdir, extra=[*LONG_CONTEXT, *flags]))
    context.queen_url = context.queen.base_url
    context.hive_url = context.queen.hive_url


@given("a queen on free loopback ports")
def a_queen(context) -> None:
    start_queen(context)


@given("a queen on free loopback ports whose workers have {slots:d} slot")
@given("a queen on free loopback ports whose workers have {slots:d} slots")
def a_queen_with_slots(context, slots: int) -> None:
    start_queen(context, "--worker-slots", str(slots))


@given("`rbee up` is running on free loopback ports")
def rbee_up(context) -> None:
    context.queen = started(context, queen_daemon(context.workdir, "up", LONG_CONTEXT))
    context.queen_url = context.queen.base_url
    context.hive_url = context.queen.hive_url
    assert http_json(f"{context.hive_url}/v1/health")[0] == 200, "rbee up did not start its hive"


@given("no hive answers on the queen's hive port")
def no_hive(context) -> None:
    assert http_json(f"{context.hive_url}/v1/health")[0] == 0


@given("a hive on free loopback ports")
def a_hive(context) -> None:
    context.hive = started(context, hive_daemon(context.workdir))
    context.hive_url = context.hive.base_url


@given("a worker serving the tiny model with {slots:d} slot")
@given("a worker serving the tiny model with {slots:d} slots")
def a_worker(context, slots: int) -> None:
    daemon = worker_daemon(context.workdir, context.tiny_model, slots, ["--ctx-size", "8192"])
    context.worker = started(context, daemon)
    context.worker_url = context.worker.base_url
    ready = wait_until(lambda: http_json(f"{context.worker_url}/v1/ready")[0] == 200, 30)
    assert ready, context.worker.log_tail()
