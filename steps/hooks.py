"""behave hooks: one tiny model per run, a fresh folder per scenario, every daemon stopped."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from behave.model_core import Status

from rbee.testing.tiny_model import build_tiny_gguf
from steps.common import FAST_TIMINGS

LOG_LINES = 60
FAILED_LOGS = Path("reports/rc/failed-logs")


def before_all(context) -> None:
    """Build the tiny random-weight model once for the whole run."""
    context.run_dir = Path(tempfile.mkdtemp(prefix="rbee-behave-"))
    context.tiny_model = build_tiny_gguf(context.run_dir / "tiny.gguf", context_length=8192)


def before_scenario(context, scenario) -> None:
    """Give each scenario its own folder and an empty list of daemons to stop."""
    context.workdir = Path(tempfile.mkdtemp(prefix="scenario-", dir=context.run_dir))
    context.daemons = []
    context.streams = []
    context.orphans = []
    context.env = dict(FAST_TIMINGS)


def after_scenario(context, scenario) -> None:
    """Close streams and stop every daemon by PID; show every log when the scenario failed."""
    for stream in context.streams:
        stream.close()
    for daemon in reversed(context.daemons):
        context.orphans.extend(daemon.stop())
    if scenario.status in (Status.failed, Status.error, Status.hook_error):
        keep_logs(context.workdir, scenario)
    assert not context.orphans, f"processes outlived their daemons: {context.orphans}"


def keep_logs(workdir: Path, scenario) -> None:
    """Print the end of every daemon log of a failed scenario and keep the whole logs in reports/."""
    kept = FAILED_LOGS / f"{Path(scenario.filename).stem}-{scenario.line}"
    for log in sorted(workdir.rglob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LOG_LINES:]
        print(f"--- {log.relative_to(workdir)} ---", *lines, sep="\n")
        target = kept / log.relative_to(workdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, target)


def after_all(context) -> None:
    """Remove the run's folder."""
    shutil.rmtree(context.run_dir, ignore_errors=True)
