"""Smoke run of the fair-queueing benchmark on the tiny model: the harness works end to end (two
named keys created, each phase measured, the table and the goal's verdict printed), whatever
the figures."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("alone", "slots busy, no backlog", "flood on another key", "flood on the same key (FIFO)")


def test_the_fairness_benchmark_measures_every_phase_and_says_whether_the_goal_is_met():
    command = [sys.executable, "bench/fairness.py", "--flood", "8", "--requests", "3", "--interval-s", "0.3",
               "--tokens", "4"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for phase in PHASES:
        row = next(line for line in run.stdout.splitlines() if line.startswith(f"| {phase} |"))
        cells = [cell.strip() for cell in row.split("|")[2:-1]]
        assert cells[0] == "3" and all(re.fullmatch(r"\d+", cell) for cell in cells[1:5]), row
    assert re.search(r"p95 alone: [\d.]+ \(goal ≤ 2×: (met|not met)\)", run.stdout), run.stdout
