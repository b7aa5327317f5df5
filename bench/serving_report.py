"""The Markdown report of `bench/serving.py`: the figures with their ratios, the multi-turn
table, every goal met or not with where the time goes, written over the latest-run section."""

from __future__ import annotations

import datetime
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from multiturn import Result, Settings, table
from serving_clients import Figures, Plan

BASELINE = "(b) llama_cpp.server"
ENGINE = "(a) llama-cpp-python in-process"
QUEEN = "(d) rbee through the queen"
WORKER = "(c) rbee worker"
LLAMA_SERVER = "(e) llama-server"
MULTITURN_RBEE = "rbee through the queen"
MULTITURN_SERVER = "llama-server"
SECTION = "## Latest `make bench` run"
MB = 1_000_000
RELAY_GOAL_STREAMS = 16
RELAY_GOAL_MS = 0.05


@dataclass(frozen=True)
class Goals:
    """What the goals need besides the systems' figures."""

    cpu_per_token_s: dict[int, float]
    """Concurrent streams → the queen's CPU seconds per relayed token."""
    idle_streams: int
    idle_rss: float
    idle_baseline_rss: float
    multiturn: dict[str, Result] = field(default_factory=dict)
    multiturn_settings: Settings = Settings()
    analysis: str | None = None
    """Where the time of the goals not met goes, from a profile (`--analysis`)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Systems whose run failed (left out of the tables) → why."""


@dataclass(frozen=True)
class Goal:
    """One row of the goals table; `met` None: not measured or no target."""

    label: str
    target: str
    measured: str
    met: bool | None
    where: str = ""
    """For a goal not met: how the time splits between the measured systems."""


def _references(systems: dict[str, Figures]) -> list[tuple[str, Figures]]:
    """The columns each cell is a ratio to: (e) and (b), or (b) and (a) without (e)."""
    present = [(name[1], systems[name]) for name in (LLAMA_SERVER, BASELINE, ENGINE) if name in systems]
    return present[:2]


def _rows(systems: dict[str, Figures]) -> list[tuple[str, list[str]]]:
    references = _references(systems)

    def row(label: str, pick, digits: int = 1) -> tuple[str, list[str]]:
        cells = []
        for figures in systems.values():
            ratios = ", ".join(f"{pick(figures) / pick(ref):.2f}× {tag}" for tag, ref in references)
            cells.append(f"{pick(figures):.{digits}f} ({ratios})")
        return label, cells

    rows = [
        row("single stream, tokens/s", lambda f: f.single_tokens_per_s),
        row("time to first token p50, ms", lambda f: f.ttft_p50_ms),
        row("time to first token p95, ms", lambda f: f.ttft_p95_ms),
    ]
    for level in systems[QUEEN].aggregate:
        rows.append(row(f"aggregate tokens/s, {level} stream{'s' if level > 1 else ''}",
                        lambda f, n=level: f.aggregate[n]))
    rows.append(("tokens per stream (mean)", [f"{f.tokens_per_stream:.1f}" for f in systems.values()]))
    return rows


def _rate_split(systems: dict[str, Figures], pick) -> str:
    queen, worker, server = pick(systems[QUEEN]), pick(systems[WORKER]), pick(systems[LLAMA_SERVER])
    return (f"the worker alone (c) makes {worker:.1f} tokens/s ({worker / server:.2f}× (e)), through the "
            f"queen {queen:.1f} (queen and hive on the same cores: {queen / worker - 1:+.0%} of (c))")


def _llama_server_goals(systems: dict[str, Figures]) -> list[Goal]:
    """Issue 15: rbee through the queen against llama-server."""
    labels = [(f"aggregate tokens/s at {level} streams, (d)/(e)", f"≥ {target}×", target,
               lambda f, n=level: f.aggregate[n]) for level, target in ((16, 1.1), (4, 1.0))
              if level in systems[QUEEN].aggregate]
    labels.append(("single-stream tokens/s, (d)/(e)", "≥ 0.95×", 0.95, lambda f: f.single_tokens_per_s))
    ttft = "time to first token p50, single stream, (d) − (e)"
    if LLAMA_SERVER not in systems:
        missing = "not measured (llama-server left out)"
        return [Goal(label, target, missing, None) for label, target, _, _ in labels] + \
            [Goal(ttft, "≤ +5 ms", missing, None)]
    goals = []
    for label, target_text, target, pick in labels:
        value = pick(systems[QUEEN]) / pick(systems[LLAMA_SERVER])
        goals.append(Goal(label, target_text, f"{value:.2f}×", value >= target, _rate_split(systems, pick)))
    server, worker, queen = (systems[name].ttft_p50_ms for name in (LLAMA_SERVER, WORKER, QUEEN))
    where = (f"llama-server {server:.1f} ms; the worker alone (c) {worker:.1f} ms "
             f"({worker - server:+.1f} ms: the worker's HTTP, tokenising and first decode); "
             f"the queen and hive add {queen - worker:+.1f} ms")
    goals.append(Goal(ttft, "≤ +5 ms", f"{queen - server:+.1f} ms", queen - server <= 5, where))
    return goals


def _relay_goals(goals: Goals) -> list[Goal]:
    rows = []
    for level, cpu in goals.cpu_per_token_s.items():
        label = f"queen CPU per relayed token (user + system), {level} streams"
        ms = cpu * 1000
        if level == RELAY_GOAL_STREAMS:
            where = "the queen's relay: see its profile (rbee/queen, rbee/common/sse.py)"
            rows.append(Goal(label, f"≤ {RELAY_GOAL_MS} ms", f"{ms:.3f} ms", ms <= RELAY_GOAL_MS, where))
        else:
            rows.append(Goal(label, "— (measured)", f"{ms:.3f} ms", None))
    return rows


def _multiturn_goals(goals: Goals) -> list[Goal]:
    """TTFT at the last turn ≤ 1.2× the first (rbee), and ≤ llama-server's at the last turn."""
    rbee, server = goals.multiturn.get(MULTITURN_RBEE), goals.multiturn.get(MULTITURN_SERVER)
    if rbee is None:
        return []
    last = goals.multiturn_settings.turns
    chars = rbee.prompt_chars
    rows = []
    for level, per_turn in rbee.ttft_p50_ms.items():
        at = f"{level} conversation{'s' if level > 1 else ''} at once"
        growth = per_turn[-1] / per_turn[0]
        where = (f"turn 1 {per_turn[0]:.1f} ms with a {chars[0]}-char prompt, turn {last} "
                 f"{per_turn[-1]:.1f} ms with {chars[-1]} chars: the time grows with the part of the "
                 "history decoded again")
        rows.append(Goal(f"multi-turn TTFT p50, turn {last} / turn 1, rbee, {at}", "≤ 1.2×",
                         f"{growth:.2f}×", growth <= 1.2, where))
        label = f"multi-turn TTFT p50 at turn {last}, rbee / llama-server, {at}"
        if server is None:
            rows.append(Goal(label, "≤ 1.0×", "not measured (llama-server left out)", None))
            continue
        theirs = server.ttft_p50_ms[level]
        ratio = per_turn[-1] / theirs[-1]
        where = (f"rbee {per_turn[0]:.1f} → {per_turn[-1]:.1f} ms from turn 1 to {last}, llama-server "
                 f"{theirs[0]:.1f} → {theirs[-1]:.1f} ms")
        rows.append(Goal(label, "≤ 1.0×", f"{ratio:.2f}× ({per_turn[-1]:.1f} against {theirs[-1]:.1f} ms)",
                         ratio <= 1.0, where))
    return rows


def _earlier_goals(systems: dict[str, Figures], goals: Goals) -> list[Goal]:
    """Issue 7's goals against (b), and the idle streams' memory."""
    rows: list[Goal] = []
    rss = goals.idle_rss / MB
    grown = (goals.idle_rss - goals.idle_baseline_rss) / MB
    memory = Goal(f"queen RSS with {goals.idle_streams} idle open streams", "≤ 200 MB",
                  f"{rss:.0f} MB ({grown:+.0f} MB over no stream)", rss <= 200)
    if BASELINE not in systems:
        return [memory]
    base = systems[BASELINE]

    def ratio(label: str, target: float, pick) -> None:
        for name in (WORKER, QUEEN):
            value = pick(systems[name]) / pick(base)
            rows.append(Goal(f"{label}, {name[:3]}/(b)", f"≥ {target}×", f"{value:.2f}×", value >= target))

    if 16 in base.aggregate:
        ratio("aggregate tokens/s at 16 streams", 2.5, lambda f: f.aggregate[16])
    if 4 in base.aggregate:
        ratio("aggregate tokens/s at 4 streams", 1.5, lambda f: f.aggregate[4])
    ratio("single-stream tokens/s", 0.95, lambda f: f.single_tokens_per_s)
    extra = systems[QUEEN].ttft_p50_ms - base.ttft_p50_ms
    rows.append(Goal("time to first token p50, (d) − (b)", "≤ +5 ms", f"{extra:+.1f} ms", extra <= 5))
    return [*rows, memory]


def goal_rows(systems: dict[str, Figures], goals: Goals) -> list[Goal]:
    """Every goal: issue 15's (against llama-server, the relay, multi-turn), then the earlier ones."""
    return [*_llama_server_goals(systems), *_relay_goals(goals), *_multiturn_goals(goals),
            *_earlier_goals(systems, goals)]


def _met(ok: bool | None) -> str:
    return "—" if ok is None else "yes" if ok else "**no**"


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


def _where(rows: list[Goal], analysis: str | None) -> list[str]:
    missed = [goal for goal in rows if goal.met is False]
    if not missed:
        return ["Every goal measured is met."]
    lines = [f"- {goal.label}: {goal.where}." if goal.where else f"- {goal.label}." for goal in missed]
    lines.append("")
    lines.append(analysis.strip() if analysis else
                 "Profile: _not written for this run_ (`--analysis FILE` puts it here).")
    return lines


def _multiturn_section(goals: Goals) -> list[str]:
    if not goals.multiturn:
        return []
    settings = goals.multiturn_settings
    return [
        "### Multi-turn",
        "",
        f"Conversations of {settings.turns} turns: each turn appends a user message of about 40 tokens "
        f"and asks for {settings.answer_tokens} tokens (EOS ignored), the answer appended to the history. "
        "The model has no chat template, so the client renders the transcript with rbee's plain chat "
        "fallback (`User: …` / `Assistant:`) and sends it whole on the completions route of both "
        "systems: the same prompt and answers of the same length for both, where their chat routes "
        "would render different formats (rbee's fallback with `\\nUser:` stops, llama-server's ChatML). "
        "Time to first token p50 (ms) per turn over the conversations: 1 at once "
        f"({settings.single_runs} one after another), "
        "and N at once. rbee: the queen with its local hive, a worker with a slot per conversation of the "
        "largest level; llama-server: `-np` the same, the same context per slot and threads, "
        "`cache_prompt` on (its default); a fresh connection per request.",
        "",
        *table(goals.multiturn, settings),
        "",
    ]


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
    """The latest-run section."""
    pinning = (f"every measured process pinned to CPUs {server_cpus} with `taskset` (the client ran on "
               "the other cores)" if server_cpus else "no pinning: the client shared the cores")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = goal_rows(systems, goals)
    tags = " and ".join(f"to ({tag})" for tag, _ in _references(systems))
    lines = [
        f"{SECTION} ({datetime.date.today().isoformat()})",
        "",
        f"Model `{model}`, {threads} llama.cpp thread(s) in every system, {_cpu_model()} ({os.cpu_count()} "
        f"CPUs; {pinning}); load average at the end {load}; {duration_s:.0f} s.",
        "",
        f"Command: `{command}`",
        "",
        f"Each stream is one completion of up to {plan.tokens} tokens (temperature 0.7, its own seed, its "
        "own prompt of about 20 tokens, so no KV-cache reuse between requests; (c), (d) and (e) ignore EOS). "
        f"Single stream: median of {plan.single_runs} runs, tokens over the whole request time. Time to "
        f"first token: {plan.ttft_runs} sequential requests. Aggregate: N streams started together, all "
        "their tokens over the time from the first start to the last end. Each cell: the figure (its "
        f"ratio {tags}).",
        "",
        *_table(["figure", *systems], [[label, *cells] for label, cells in _rows(systems)]),
        "",
        *[f"{name} is left out: its run failed ({why}).\n" for name, why in goals.failed.items()],
        "### Goals",
        "",
        *_table(["goal", "target", "measured", "met"],
                [[goal.label, goal.target, goal.measured, _met(goal.met)] for goal in rows]),
        "",
        *_multiturn_section(goals),
        "### Where the time goes",
        "",
        *_where(rows, goals.analysis),
        "",
        "(a) is llama-cpp-python's `Llama.generate()` in one process with incremental detokenization "
        "and no HTTP; concurrent streams share the one `Llama` behind a lock. (b) is "
        "`python -m llama_cpp.server` with the same threads and context and "
        "`--interrupt_requests False` (by default a new request cuts the running one short, so "
        "concurrent streams end early). (c) is `rbee worker` with the batched engine and a slot "
        "per concurrent stream. (d) is `rbee queen` with its local hive, "
        "which spawns the same worker; the queen, hive and worker share the cores. (e) is llama.cpp's "
        "C++ `llama-server` built from the llama.cpp vendored in the same llama-cpp-python "
        "(`bench/llama_server.py`), with `-np` the slots of (c), `-c` slots × the same context per slot, "
        "the same threads, continuous batching and prompt caching (its defaults), a fresh connection per "
        "request. The queen's CPU per relayed token is its CPU time (user + system) while it relays N "
        "concurrent streams, over the tokens they carried, through a queen whose worker has a slot per "
        "stream. The idle-stream figure uses tiny-model workers on the simple engine whose slot threads "
        "hang after a few tokens, so every stream stays open with nothing moving.",
        "",
    ]
    return "\n".join(lines)


def write_report(path: Path, section: str) -> None:
    """Put `section` in place of the file's latest-run section (from its `## Latest` heading to
    the next `## ` heading), or before its first `## ` section when it has none."""
    if not path.exists():
        path.write_text(f"# Performance\n\n{section}")
        return
    lines = path.read_text().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith("## Latest")), None)
    if start is None:
        start = end = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    gap = "\n" if end < len(lines) else ""
    path.write_text("".join(lines[:start]) + section + gap + "".join(lines[end:]))
