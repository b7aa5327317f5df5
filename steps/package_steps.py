"""Steps of features/605: token files made by `--init-tokens`, and rbee's wheel installed into a
fresh virtualenv (outside this checkout) rendering the units and checking the jobs it ships."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from behave import given, then, when

from rbee.common.secrets import ROLES
from rbee.testing.wheelhouse import build_own_wheel
from steps.deploy_steps import deploy_environment, deploy_for_test_machine

CHECKOUT = Path(__file__).resolve().parents[1]
CREATED = re.compile(r"^created token file (\S+) \(mode 0600\)$", re.M)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _token_text(context, role: str) -> str:
    return (context.token_dir / f"{role}.token").read_text().strip()


def _created(context) -> list[Path]:
    return [Path(item) for item in CREATED.findall(context.deploy.stderr)]


@given("no token folder exists yet")
def no_token_folder(context) -> None:
    context.token_dir = context.workdir / "secrets" / "tokens"
    assert not context.token_dir.exists()


@then("the queen, hive and worker token files exist with mode 0600 in a folder of mode 0700")
def token_files_made(context) -> None:
    assert _mode(context.token_dir) == 0o700, oct(_mode(context.token_dir))
    for role in ROLES:
        path = context.token_dir / f"{role}.token"
        assert _mode(path) == 0o600, (path, oct(_mode(path)))


@then("stderr names each token file it created")
def names_created(context) -> None:
    assert sorted(_created(context)) == sorted(context.token_dir / f"{r}.token" for r in ROLES), \
        context.deploy.stderr


@then("the three token files hold different tokens")
def different_tokens(context) -> None:
    tokens = {_token_text(context, role) for role in ROLES}
    assert len(tokens) == 3 and all(len(token) >= 32 for token in tokens), tokens


@then("the queen and hive token files still hold their tokens")
def tokens_kept(context) -> None:
    for role in ("queen", "hive"):
        assert _token_text(context, role) == context.tokens[role], role


@then("stderr names the worker token file as created and no other")
def only_worker_created(context) -> None:
    assert _created(context) == [context.token_dir / "worker.token"], context.deploy.stderr
    assert _mode(context.token_dir / "worker.token") == 0o600


@given("rbee's wheel installed into a fresh virtualenv in a temporary folder")
def wheel_in_fresh_venv(context) -> None:
    """Build the wheel from this checkout, install it (no dependencies, no index) into a new
    virtualenv under a temporary folder; the dependencies come from this test run's virtualenv
    through a plain path line (its .pth files, the editable rbee among them, are not read)."""
    root = Path(tempfile.mkdtemp(prefix="rbee-wheel-test-"))
    context.add_cleanup(shutil.rmtree, root, ignore_errors=True)
    wheel = build_own_wheel(CHECKOUT, root / "dist")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                    "--quiet", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    site_packages = next((venv / "lib").glob("python*/site-packages"))
    (site_packages / "rbee-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    context.wheel_root, context.wheel_venv, context.wheel_site = root, venv, site_packages


def _outside_env(context) -> dict[str, str]:
    """The deploy environment without this checkout on the import path."""
    return {key: value for key, value in deploy_environment(context).items() if key != "PYTHONPATH"}


@when('I run "{command}" with that virtualenv\'s rbee from the temporary folder')
def run_installed(context, command: str) -> None:
    rbee = [str(context.wheel_venv / "bin" / "rbee")]
    if command.startswith("rbee deploy systemd"):
        deploy_for_test_machine(context, command, rbee, _outside_env(context), cwd=context.wheel_root)
        return
    context.deploy = subprocess.run([*rbee, *command.split()[1:]], env=_outside_env(context),
                                    cwd=context.wheel_root, capture_output=True, text=True, timeout=120)


@then("the written rbee-hive.service runs that virtualenv's rbee")
def unit_runs_venv(context) -> None:
    text = (context.dest / "rbee-hive.service").read_text()
    assert f"ExecStart={context.wheel_venv / 'bin' / 'rbee'} hive" in text, text


@then("that virtualenv imports rbee from its own site-packages, where no jobs folder sits beside the package")
def imports_from_venv(context) -> None:
    probe = subprocess.run([str(context.wheel_venv / "bin" / "python"), "-c",
                            "import rbee.deploy.templates as t; print(t.__file__)"],
                           env=_outside_env(context), cwd=context.wheel_root, capture_output=True,
                           text=True, timeout=60, check=True)
    location = Path(probe.stdout.strip())
    assert location.is_relative_to(context.wheel_site), location
    assert not (context.wheel_site / "jobs").exists() and not (context.wheel_root / "jobs").exists()
    assert os.path.isfile(context.wheel_site / "rbee" / "deploy" / "jobs" / "systemd" / "rbee-hive.service")


@then('it exits 0 and checked the jobs "{first}" and "{second}" from that virtualenv\'s package')
def nomad_checked(context, first: str, second: str) -> None:
    result = context.deploy
    assert result.returncode == 0, (result.stdout, result.stderr)
    jobs = context.wheel_site / "rbee" / "deploy" / "jobs" / "nomad"
    for job in (first, second):
        assert f"ok: {jobs / (job + '.nomad.hcl')} (job {job}," in result.stdout, result.stdout
