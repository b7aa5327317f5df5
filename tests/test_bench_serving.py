"""Smoke run of the serving benchmark on the tiny model: the harness works end to end (every
system measured, the table and the goals written), whatever the figures."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("(a) llama-cpp-python in-process", "(b) llama_cpp.server", "(c) rbee worker",
           "(d) rbee through the queen")


def test_the_serving_benchmark_writes_every_figure_with_its_ratios(tmp_path):
    report = tmp_path / "performance.md"
    command = [sys.executable, "bench/serving.py", "--tiny", "--levels", "1,4,16", "--ttft-runs", "3",
               "--idle-streams", "10", "--output", str(report)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = report.read_text()
    assert text in run.stdout
    header = next(line for line in text.splitlines() if line.startswith("| figure |"))
    assert all(system in header for system in SYSTEMS)
    for label in ("single stream, tokens/s", "time to first token p50, ms", "aggregate tokens/s, 1 stream",
                  "aggregate tokens/s, 16 streams"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
        cells = row.split("|")[2:-1]
        assert len(cells) == len(SYSTEMS)
        assert all(re.fullmatch(r" [\d.]+ \([\d.]+× b, [\d.]+× a\) ", cell) for cell in cells), row
    assert "| tokens per stream (mean) |" in text
    assert re.search(r"\| queen CPU per relayed token \(user \+ system\) \| ≤ 0.2 ms \| [\d.]+ ms \|", text)
    assert re.search(r"\| queen RSS with 10 idle open streams \| ≤ 200 MB \| \d+ MB", text)
    assert "Command: `" in text and "--tiny" in text
