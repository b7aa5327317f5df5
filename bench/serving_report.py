"""The Markdown report of `bench/serving.py`: the figures with their ratios, and the goals."""

from __future__ import annotations

import datetime
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from serving_clients import Figures, Plan

BASELINE = "(b) llama_cpp.server"
ENGINE = "(a) llama-cpp-python in-process"
QUEEN = "(d) rbee through the queen"
WORKER = "(c) rbee worker"
MB = 1_000_000


@dataclass(frozen=True)
class Goals:
    """The queen's relay figures (the rest of the goals come from the systems' figures)."""

    cpu_per_token_s: float
    idle_streams: int
    idle_rss: float
    idle_baseline_rss: float


def _cell(value: float, base: float, engine: float, digits: int) -> str:
    return f"{value:.{digits}f} ({value / base:.2f}× b, {value / engine:.2f}× a)"


def _rows(systems: dict[str, Figures]) -> list[tuple[str, list[str]]]:
    base, engine = systems[BASELINE], systems[ENGINE]

    def row(label: str, pick, digits: int = 1) -> tuple[str, list[str]]:
        return label, [_cell(pick(f), pick(base), pick(engine), digits) for f in systems.values()]

    rows = [
        row("single stream, tokens/s", lambda f: f.single_tokens_per_s),
        row("time to first token p50, ms", lambda f: f.ttft_p50_ms),
        row("time to first token p95, ms", lambda f: f.ttft_p95_ms),
    ]
    for level in base.aggregate:
        rows.append(row(f"aggregate tokens/s, {level} stream{'s' if level > 1 else ''}",
                        lambda f, n=level: f.aggregate[n]))
    rows.append(("tokens per stream (mean)", [f"{f.tokens_per_stream:.1f}" for f in systems.values()]))
    return rows


def _goal_rows(systems: dict[str, Figures], goals: Goals) -> list[list[str]]:
    base = systems[BASELINE]
    rows: list[list[str]] = []

    def ratio(label: str, target: float, pick) -> None:
        for name in (WORKER, QUEEN):
            value = pick(systems[name]) / pick(base)
            rows.append([f"{label}, {name[:3]}/(b)", f"≥ {target}×", f"{value:.2f}×", _met(value >= target)])

    if 16 in base.aggregate:
        ratio("aggregate tokens/s at 16 streams", 2.5, lambda f: f.aggregate[16])
    if 4 in base.aggregate:
        ratio("aggregate tokens/s at 4 streams", 1.5, lambda f: f.aggregate[4])
    ratio("single-stream tokens/s", 0.95, lambda f: f.single_tokens_per_s)
    extra = systems[QUEEN].ttft_p50_ms - base.ttft_p50_ms
    rows.append(["time to first token p50, (d) − (b)", "≤ +5 ms", f"{extra:+.1f} ms", _met(extra <= 5)])
    cpu_ms = goals.cpu_per_token_s * 1000
    rows.append(["queen CPU per relayed token (user + system)", "≤ 0.2 ms", f"{cpu_ms:.3f} ms",
                 _met(cpu_ms <= 0.2)])
    rss = goals.idle_rss / MB
    grown = (goals.idle_rss - goals.idle_baseline_rss) / MB
    rows.append([f"queen RSS with {goals.idle_streams} idle open streams", "≤ 200 MB",
                 f"{rss:.0f} MB ({grown:+.0f} MB over no stream)", _met(rss <= 200)])
    return rows


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _cpu_model() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def render(
    systems: dict[str, Figures],
    goals: Goals,
    plan: Plan,
    model: str,
    threads: int,
    server_cpus: str | None,
    command: str,
    duration_s: float,
) -> str:
    """The whole report."""
    pinning = (f"every measured process pinned to CPUs {server_cpus} with `taskset` (the client ran on "
               "the other cores)" if server_cpus else "no pinning: the client shared the cores")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "# Performance",
        "",
        f"Latest `bench/serving.py` run, {datetime.date.today().isoformat()}: model `{model}`, "
        f"{threads} llama.cpp thread(s) in every system, {_cpu_model()} ({os.cpu_count()} CPUs; {pinning}); "
        f"load average at the end {load}; {duration_s:.0f} s.",
        "",
        f"Command: `{command}`",
        "",
        f"Each stream is one completion of up to {plan.tokens} tokens (temperature 0.7, its own seed, its "
        "own prompt of about 20 tokens, so no KV-cache reuse between requests). Single stream: median of "
        f"{plan.single_runs} runs, tokens over the whole request time. Time to first token: "
        f"{plan.ttft_runs} sequential requests. Aggregate: N streams started together, all their tokens "
        "over the time from the first start to the last end. Each cell: the figure (its ratio to (b), "
        "its ratio to (a)).",
        "",
        *_table(["figure", *systems], [[label, *cells] for label, cells in _rows(systems)]),
        "",
        "## Goals",
        "",
        *_table(["goal", "target", "measured", "met"], _goal_rows(systems, goals)),
        "",
        "(a) is llama-cpp-python's `Llama.generate()` in one process with incremental detokenization "
        "and no HTTP; concurrent streams share the one `Llama` behind a lock. (b) is "
        "`python -m llama_cpp.server` with the same threads and context and "
        "`--interrupt_requests False` (by default a new request cuts the running one short, so "
        "concurrent streams end early). (c) is `rbee worker` with the batched engine and a slot "
        "per concurrent stream. (d) is `rbee queen` with its local hive, "
        "which spawns the same worker; the queen, hive and worker share the cores. The queen's CPU "
        f"per relayed token is its CPU time while it relays {max(plan.levels)} concurrent streams of "
        f"(d), over the tokens they carried. The idle-stream figure uses tiny-model workers on the "
        "simple engine whose slot threads hang after a few tokens, so every stream stays open with "
        "nothing moving.",
        "",
    ]
    return "\n".join(lines)
