"""Steps that run the chaos experiments (chaos/run.py) and check their verdicts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from behave import then, when

RUNNER = Path(__file__).resolve().parents[1] / "chaos" / "run.py"
EXPERIMENT_TIMEOUT_S = 300


@when('the chaos experiment "{name}" runs')
def run_experiment(context, name: str) -> None:
    verdicts = context.workdir / "verdicts.jsonl"
    context.chaos = subprocess.run(
        [sys.executable, str(RUNNER), name, "--json", str(verdicts)],
        capture_output=True, text=True, timeout=EXPERIMENT_TIMEOUT_S, check=False,
    )
    print(context.chaos.stdout)
    context.verdict = json.loads(verdicts.read_text().splitlines()[0]) if verdicts.exists() else {}


@then("its verdict is PASS")
def verdict_pass(context) -> None:
    assert context.chaos.returncode == 0 and context.verdict.get("passed") is True, (
        context.chaos.stdout[-3000:], context.chaos.stderr[-3000:])
