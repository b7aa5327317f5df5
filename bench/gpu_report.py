"""The Markdown report of `bench/gpu.py`: per model a table per level and system, the ratios
of rbee to llama-server and to llama-batched-bench, and the issue's goals, MET or NOT MET."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from gpu_probes import Usage
from serving_clients import Figures

SERVER = "(a) llama-server"
WORKER = "(b) rbee worker"
QUEEN = "(c) rbee through the queen"
CEILING = "(d) llama-batched-bench"
GIB = 2**30


@dataclass(frozen=True)
class Level:
    """One system at one level of concurrent streams."""

    tokens_per_s: float
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    usage: Usage | None = None


@dataclass
class System:
    """One system's figures, or why there are none (`note`)."""

    figures: Figures | None = None
    """Single stream and time to first token at N=1 (from `serving_clients.measure`)."""
    levels: dict[int, Level] = field(default_factory=dict)
    note: str = ""


@dataclass
class Model:
    """One model's run."""

    name: str
    parameters: int
    file_bytes: int
    systems: dict[str, System]


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _level_rows(model: Model) -> list[str]:
    rows = ["| streams | system | tokens/s | TTFT p50 ms | TTFT p95 ms | GPU busy % | busiest thread CPU % "
            "| VRAM GiB |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    levels = sorted({n for system in model.systems.values() for n in system.levels})
    for level in levels:
        for name, system in model.systems.items():
            if level not in system.levels:
                continue
            figures = system.levels[level]
            usage = figures.usage or Usage(None, None, None, "")
            owner = f" ({usage.thread_owner})" if usage.thread_owner else ""
            thread = _num(usage.thread_cpu_pct, 0) + owner
            vram = None if usage.vram_bytes is None else usage.vram_bytes / GIB
            rows.append(f"| {level} | {name} | {figures.tokens_per_s:.1f} | {_num(figures.ttft_p50_ms)} "
                        f"| {_num(figures.ttft_p95_ms)} | {_num(usage.gpu_busy_pct, 0)} | {thread} "
                        f"| {_num(vram, 2)} |")
    return rows


def _rate(model: Model, name: str, level: int) -> float | None:
    system = model.systems.get(name)
    figures = system.levels.get(level) if system else None
    return figures.tokens_per_s if figures else None


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def _ratio_rows(model: Model) -> list[str]:
    rows = ["| streams | queen ÷ llama-server | worker ÷ llama-server | queen ÷ batched-bench |",
            "|---:|---:|---:|---:|"]
    for level in sorted(model.systems[QUEEN].levels):
        cells = [_ratio(_rate(model, a, level), _rate(model, b, level))
                 for a, b in ((QUEEN, SERVER), (WORKER, SERVER), (QUEEN, CEILING))]
        rows.append(f"| {level} | " + " | ".join(_num(c, 2) + ("×" if c else "") for c in cells) + " |")
    return rows


def _single(model: Model, name: str) -> float | None:
    system = model.systems.get(name)
    return system.figures.single_tokens_per_s if system and system.figures else None


def _ttft(model: Model, name: str) -> float | None:
    figures = model.systems[name].figures
    return figures.ttft_p50_ms if figures else None


def goals(model: Model) -> list[tuple[str, str, str, bool | None]]:
    """(goal, target, measured, met) of the issue's goals that apply to this model; met is None
    where a figure is missing."""
    single = _ratio(_single(model, QUEEN), _single(model, SERVER))
    rows: list[tuple[str, str, str, bool | None]] = [
        ("queen ÷ llama-server, 1 stream (median of the single-stream runs)", "≥ 1.0×",
         _num(single, 2) + "×", None if single is None else single >= 1.0)]
    checks = [("llama-server", SERVER, 64, 2.0)]
    if model.name == "8b":
        checks.append(("batched-bench", CEILING, 64, 0.8))
    for label, name, level, bound in checks:
        value = _ratio(_rate(model, QUEEN, level), _rate(model, name, level))
        rows.append((f"queen ÷ {label}, {level} stream{'s' if level > 1 else ''}", f"≥ {bound}×",
                     _num(value, 2) + "×", None if value is None else value >= bound))
    queen, server = _ttft(model, QUEEN), _ttft(model, SERVER)
    gap = None if queen is None or server is None else queen - server
    rows.append(("TTFT p50 at 1 stream, queen − llama-server", "≤ +5 ms", _num(gap) + " ms",
                 None if gap is None else gap <= 5.0))
    return rows


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else "MET" if met else "NOT MET"


def render_model(model: Model) -> str:
    """The section of one model."""
    lines = [f"## {model.name}: {model.parameters / 1e9:.2f} B parameters, "
             f"{model.file_bytes / GIB:.2f} GiB f16", ""]
    for name, system in model.systems.items():
        if system.note:
            lines.append(f"- {name}: {system.note}")
        if system.figures:
            figures = system.figures
            lines.append(f"- {name}: single stream {figures.single_tokens_per_s:.1f} tokens/s, "
                         f"TTFT p50 {figures.ttft_p50_ms:.1f} ms, p95 {figures.ttft_p95_ms:.1f} ms")
    lines += ["", *_level_rows(model), "", *_ratio_rows(model), "",
              "| goal | target | measured | verdict |", "|---|---|---:|---|"]
    lines += [f"| {goal} | {target} | {value} | {_verdict(met)} |"
              for goal, target, value, met in goals(model)]
    return "\n".join(lines) + "\n"


def render(models: list[Model], gpu_name: str, command: str, notes: list[str], elapsed_s: float) -> str:
    """The whole report."""
    head = [
        "# GPU benchmark: rbee against llama-server and llama-batched-bench", "",
        f"Measured {datetime.date.today().isoformat()} on {gpu_name} by `{command}` "
        f"({elapsed_s:.0f} s, model files included).", "",
        *[f"- {note}" for note in notes], "", "",
    ]
    return "\n".join(head) + "\n".join(render_model(model) for model in models)
