"""Smoke run of the serving benchmark on the tiny model: the harness works end to end (every
system measured, the table, the multi-turn table and every goal written), whatever the figures.
llama-server is left out (`--without-llama-server`: no 10-minute build in CI); its goals must
then say they were not measured."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("(a) llama-cpp-python in-process", "(b) llama_cpp.server", "(c) rbee worker",
           "(d) rbee through the queen")


def _row(text: str, label: str) -> list[str]:
    row = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in row.split("|")[2:-1]]


def test_the_serving_benchmark_writes_every_figure_and_goal_over_the_latest_run_section(tmp_path):
    report = tmp_path / "performance.md"
    report.write_text("# Performance\n\nIntro.\n\n## Latest `make bench` run (old)\n\nold figures\n\n"
                      "## Memory per slot\n\nkept\n")
    command = [sys.executable, "bench/serving.py", "--tiny", "--without-llama-server", "--levels", "1,4,16",
               "--ttft-runs", "3", "--idle-streams", "10", "--output", str(report)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = report.read_text()
    assert text.startswith("# Performance\n\nIntro.\n\n## Latest `make bench` run (")
    assert "old figures" not in text and text.endswith("## Memory per slot\n\nkept\n")
    section = text[text.index("## Latest"):text.index("## Memory per slot")]
    assert section.strip() in run.stdout
    header = next(line for line in text.splitlines() if line.startswith("| figure |"))
    assert all(system in header for system in SYSTEMS) and "(e)" not in header
    for label in ("single stream, tokens/s", "time to first token p50, ms", "aggregate tokens/s, 1 stream",
                  "aggregate tokens/s, 16 streams"):
        cells = _row(text, label)
        assert len(cells) == len(SYSTEMS)
        assert all(re.fullmatch(r"[\d.]+ \([\d.]+× b, [\d.]+× a\)", cell) for cell in cells), cells
    assert "| tokens per stream (mean) |" in text
    for label in ("aggregate tokens/s at 16 streams, (d)/(e)", "aggregate tokens/s at 4 streams, (d)/(e)",
                  "single-stream tokens/s, (d)/(e)", "time to first token p50, single stream, (d) − (e)"):
        assert _row(text, label)[1:] == ["not measured (llama-server left out)", "—"]
    target, measured, met = _row(text, "queen CPU per relayed token (user + system), 16 streams")
    assert target == "≤ 0.05 ms" and re.fullmatch(r"[\d.]+ ms", measured) and met in ("yes", "**no**")
    relay_64 = _row(text, "queen CPU per relayed token (user + system), 64 streams")
    assert re.fullmatch(r"[\d.]+ ms", relay_64[1])
    growth = _row(text, "multi-turn TTFT p50, turn 3 / turn 1, rbee, 2 conversations at once")
    assert growth[0] == "≤ 1.2×" and re.fullmatch(r"[\d.]+×", growth[1])
    assert "| turn | prompt chars (one conversation) | rbee through the queen, 1 conversation |" in text
    assert re.search(r"\| queen RSS with 10 idle open streams \| ≤ 200 MB \| \d+ MB", text)
    assert "### Where the time goes" in text
    assert "Command: `" in text and "--tiny" in text
