"""Steps for `rbee deploy nomad`: the structural check, and deploys to a loopback Nomad API."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from behave import given, then, when

from rbee.common.ports import free_port
from rbee.common.secrets import write_token_file
from rbee.deploy.nomad_check import JOBS_DIR
from rbee.deploy.nomad_hcl import blocks, labeled, parse_hcl, resolve, variable_defaults
from rbee.testing.nomad_api import LoopbackNomadApi

ACL_TOKEN = "7d3f0c9e-2b4a-4e61-8f5d-9a1c6e2b4f08"
CLI_TIMEOUT_S = 120


def _rbee_deploy_nomad(context, *args: str) -> None:
    """Run the command as an operator would, without any NOMAD_* variable of the test's own shell."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("NOMAD_")}
    command = [sys.executable, "-m", "rbee", "deploy", "nomad", *args]
    context.result = subprocess.run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                                    check=False, env=env)
    context.exit_code = context.result.returncode


def _start_api(context, **options) -> None:
    context.nomad_api = LoopbackNomadApi(**options).start()
    context.daemons.append(context.nomad_api)


@given('a copy of the shipped Nomad jobs with "{old}" misspelled "{new}" in the hive')
def broken_copy(context, old: str, new: str) -> None:
    context.jobs_dir = context.workdir / "jobs"
    shutil.copytree(JOBS_DIR, context.jobs_dir)
    hive = context.jobs_dir / "rbee-hive.nomad.hcl"
    text = hive.read_text()
    assert re.search(rf"^\s*{re.escape(old)}\s*=", text, re.M), f"{old} is not in the hive job"
    hive.write_text(re.sub(rf"^(\s*){re.escape(old)}(\s*=)", rf"\g<1>{new}\g<2>", text, count=1, flags=re.M))


@given('a copy of the shipped Nomad jobs whose hive asks for "{device}" devices')
def other_device_copy(context, device: str) -> None:
    context.jobs_dir = context.workdir / "jobs"
    shutil.copytree(JOBS_DIR, context.jobs_dir)
    hive = context.jobs_dir / "rbee-hive.nomad.hcl"
    text = hive.read_text()
    assert text.count('device "nvidia/gpu" {') == 1, "the hive job asks for no nvidia/gpu device"
    hive.write_text(text.replace('device "nvidia/gpu" {', f'device "{device}" {{'))


@then('the shipped hive job asks the NVIDIA device plugin for {count:d} GPU per node')
def hive_gpus(context, count: int) -> None:
    document = parse_hcl((JOBS_DIR / "rbee-hive.nomad.hcl").read_text())
    defaults = variable_defaults(document)
    [(_, job)] = labeled(document, "job")
    [(_, group)] = labeled(job, "group")
    [(_, task)] = labeled(group, "task")
    devices = [item for resources in blocks(task, "resources") for item in labeled(resources, "device")]
    assert [(name, resolve(body.get("count"), defaults)) for name, body in devices] == [("nvidia/gpu", count)]


@given('a loopback Nomad API with the client nodes "{first}" and "{second}"')
def api_with_nodes(context, first: str, second: str) -> None:
    _start_api(context, nodes=(first, second))


@given("a loopback Nomad API that requires an ACL token")
def api_with_acl(context) -> None:
    _start_api(context, acl_token=ACL_TOKEN)


@given("a loopback Nomad API whose client nodes are out of memory")
def api_without_memory(context) -> None:
    _start_api(context, placement_fails=True)


@given("the ACL token in a file of mode 0600")
def token_file(context) -> None:
    context.nomad_token_file = context.workdir / "nomad-token"
    write_token_file(context.nomad_token_file, ACL_TOKEN)


@when("I run rbee deploy nomad --check on the shipped jobs")
def check_shipped(context) -> None:
    _rbee_deploy_nomad(context, "--check")


@when("I run rbee deploy nomad --check on the copy")
def check_copy(context) -> None:
    _rbee_deploy_nomad(context, "--check", "--jobs-dir", str(context.jobs_dir))


@when("I run rbee deploy nomad against the loopback Nomad API")
def deploy_to_api(context) -> None:
    _rbee_deploy_nomad(context, "--address", context.nomad_api.url)


@when("I run rbee deploy nomad against the loopback Nomad API with the token file")
def deploy_with_token(context) -> None:
    _rbee_deploy_nomad(context, "--address", context.nomad_api.url,
                       "--token-file", str(context.nomad_token_file))


@when("I run rbee deploy nomad against a loopback port nothing listens on")
def deploy_to_nothing(context) -> None:
    _rbee_deploy_nomad(context, "--address", f"http://127.0.0.1:{free_port()}")


@then('the check passed the jobs "{first}" (type {first_type}) and "{second}" (type {second_type})')
def check_passed(context, first: str, first_type: str, second: str, second_type: str) -> None:
    for name, job_type in ((first, first_type), (second, second_type)):
        line = f"ok: {JOBS_DIR / (name + '.nomad.hcl')} (job {name}, type {job_type})"
        assert line in context.result.stdout.splitlines(), context.result.stdout
    assert context.result.stderr == "", context.result.stderr


@then('stderr has "{text}"')
def stderr_has(context, text: str) -> None:
    assert text in context.result.stderr, context.result.stderr


@then('the loopback Nomad API has the jobs "{first}" and "{second}" registered')
def jobs_registered(context, first: str, second: str) -> None:
    registered = context.nomad_api.registered()
    assert sorted(registered) == sorted([first, second]), sorted(registered)
    assert registered["rbee-hive"]["Type"] == "system" and registered["rbee-queen"]["Type"] == "service"


@then("the loopback Nomad API has no job registered")
def nothing_registered(context) -> None:
    assert context.nomad_api.registered() == {}, sorted(context.nomad_api.registered())


@then('stdout shows one queen allocation, then a hive allocation on "{first}" and one on "{second}"')
def allocations_shown(context, first: str, second: str) -> None:
    lines = context.result.stdout.splitlines()
    pattern = re.compile(r"^(\S+): allocation [0-9a-f]{8} of group \S+ on node (\S+): pending$")
    found = [match.groups() for line in lines if (match := pattern.match(line))]
    assert [job for job, _ in found].count("rbee-queen") == 1, lines
    assert sorted(node for job, node in found if job == "rbee-hive") == sorted([first, second]), lines
    registered = [line.split(":")[0] for line in lines if ": registered (" in line]
    assert registered == ["rbee-queen", "rbee-hive"], f"queen first, then hives: {lines}"
