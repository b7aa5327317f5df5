"""The serving bench's goals against llama-server and where its report goes, on made-up
figures (the smoke run leaves llama-server out)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from multiturn import Result, Settings  # noqa: E402
from serving_clients import Figures  # noqa: E402
from serving_report import Goals, goal_rows, write_report  # noqa: E402


def _figures(rate: float, ttft: float) -> Figures:
    return Figures(single_tokens_per_s=rate, ttft_p50_ms=ttft, ttft_p95_ms=ttft,
                   aggregate={1: rate, 4: 2 * rate, 16: 3 * rate}, tokens_per_stream=128)


def _goals(rbee_turns: list[float], server_turns: list[float]) -> Goals:
    multiturn = {"rbee through the queen": Result({8: rbee_turns}, [100, 200]),
                 "llama-server": Result({8: server_turns}, [100, 200])}
    return Goals(cpu_per_token_s={16: 0.00004, 64: 0.0001}, idle_streams=1000, idle_rss=150e6,
                 idle_baseline_rss=100e6, multiturn=multiturn,
                 multiturn_settings=Settings(levels=(8,), turns=2))


def _met(rows) -> dict[str, bool | None]:
    return {row.label: row.met for row in rows}


def test_rbee_is_held_to_llama_server_with_the_issue_15_ratios():
    systems = {"(b) llama_cpp.server": _figures(30, 200), "(c) rbee worker": _figures(105, 60),
               "(d) rbee through the queen": _figures(100, 64), "(e) llama-server": _figures(95, 60)}
    met = _met(goal_rows(systems, _goals([50, 55], [52, 56])))
    assert met["aggregate tokens/s at 16 streams, (d)/(e)"] is False  # 300 / 285 = 1.05×, under 1.1×
    assert met["aggregate tokens/s at 4 streams, (d)/(e)"] is True
    assert met["single-stream tokens/s, (d)/(e)"] is True
    assert met["time to first token p50, single stream, (d) − (e)"] is True  # +4 ms
    assert met["queen CPU per relayed token (user + system), 16 streams"] is True
    assert met["queen CPU per relayed token (user + system), 64 streams"] is None
    assert met["multi-turn TTFT p50, turn 2 / turn 1, rbee, 8 conversations at once"] is True  # 1.1×
    assert met["multi-turn TTFT p50 at turn 2, rbee / llama-server, 8 conversations at once"] is True


def test_a_goal_not_met_says_how_the_time_splits_between_the_systems():
    systems = {"(b) llama_cpp.server": _figures(30, 200), "(c) rbee worker": _figures(90, 70),
               "(d) rbee through the queen": _figures(80, 90), "(e) llama-server": _figures(100, 60)}
    rows = {row.label: row for row in goal_rows(systems, _goals([50, 80], [52, 56]))}
    ttft = rows["time to first token p50, single stream, (d) − (e)"]
    assert ttft.met is False and ttft.measured == "+30.0 ms"
    assert "(c) 70.0 ms (+10.0 ms" in ttft.where and "the queen and hive add +20.0 ms" in ttft.where
    assert rows["multi-turn TTFT p50, turn 2 / turn 1, rbee, 8 conversations at once"].met is False
    assert rows["multi-turn TTFT p50 at turn 2, rbee / llama-server, 8 conversations at once"].met is False


def test_the_report_replaces_only_the_latest_run_section(tmp_path):
    path = tmp_path / "performance.md"
    path.write_text("# Performance\n\nintro\n\n## Latest full run (old)\n\nold\n\n### Goals\n\nold goals\n\n"
                    "## Memory per slot\n\nkept\n")
    write_report(path, "## Latest `make bench` run (new)\n\nnew\n")
    assert path.read_text() == ("# Performance\n\nintro\n\n## Latest `make bench` run (new)\n\nnew\n\n"
                                "## Memory per slot\n\nkept\n")
    fresh = tmp_path / "fresh.md"
    write_report(fresh, "## Latest `make bench` run (new)\n")
    assert fresh.read_text() == "# Performance\n\n## Latest `make bench` run (new)\n"
