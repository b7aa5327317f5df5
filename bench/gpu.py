"""GPU benchmark: rbee against llama-server and llama-batched-bench on synthetic f16 llama models.

Per model (random weights of the 1B and 8B shapes, bench/synthetic_model.py): (a) llama-server
with one slot per stream of the largest level, (b) an rbee worker directly, (c) rbee through
the queen (queen, local hive, worker) and (d) llama-batched-bench, the engine's ceiling. Every
stream: its own ~20-token prompt, `ignore_eos`, temperature 0.7. Per system and level:
aggregate tokens/s, TTFT p50/p95, GPU busy %, the CPU share of the busiest thread of the
measured processes and the VRAM they hold; then the ratios and the issue's goals.

Run: make bench-gpu BENCH_ARGS="--models 1b,8b"         (on a lent GPU machine: docs/gpu.md)
     .venv/bin/python bench/gpu.py --backend cpu --models tiny-cpu --levels 1,2 --tokens 16
llama-server and llama-batched-bench come from RBEE_LLAMA_SERVER / RBEE_LLAMA_BATCHED_BENCH
(or the flags); without them those systems are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import synthetic_model
from gpu_probes import Gpu, Watch
from gpu_report import CEILING, QUEEN, SERVER, WORKER, Level, Model, System, render
from serving import START_TIMEOUT_S, UNLIMITED, Bench, _wait_http
from serving_clients import Plan, Stream, Timed, llama_cpp_server, measure, rbee_native

from rbee.common.ports import free_port
from rbee.common.validation import MAX_SLOTS
from rbee.testing.cluster import queen_daemon, worker_daemon

ROOT = Path(__file__).resolve().parent.parent
CTX_PER_SLOT = 1024
PROMPT_TOKENS = 20
"""`-npp` of llama-batched-bench: about the length of `serving_clients.prompt_for`."""
BATCHED_BENCH_TIMEOUT_S = 600


@dataclass
class Run:
    """One model's run: where, what, and the processes to stop."""

    model: Path
    bench: Bench
    gpu: Gpu
    backend: str
    plan: Plan
    """`levels` are the reported levels; `measure` runs single stream, TTFT and a warm-up."""
    server: str | None
    batched_bench: str | None

    @property
    def rbee_slots(self) -> int:
        """Slots of the rbee worker: one per stream of the largest level, at most `MAX_SLOTS`."""
        return min(max(self.plan.levels), MAX_SLOTS)

    @property
    def gpu_layers(self) -> str:
        """`-ngl` of the llama.cpp tools."""
        return "0" if self.backend == "cpu" else "99"


def _level(runs: list[Timed], watch: Watch) -> Level:
    wall = max(r.ended for r in runs) - min(r.started for r in runs)
    first_ms = sorted((r.first - r.started) * 1000 for r in runs)
    return Level(tokens_per_s=sum(r.tokens for r in runs) / wall, ttft_p50_ms=statistics.median(first_ms),
                 ttft_p95_ms=first_ms[min(len(first_ms) - 1, round(0.95 * (len(first_ms) - 1)))],
                 usage=watch.usage)


async def _measure(run: Run, make_stream: Callable[[aiohttp.ClientSession], Stream],
                   processes: list[psutil.Process], vram_before: int | None,
                   top: int | None = None, only: int | None = None) -> System:
    """`measure` (warm-up at the largest level, single stream, TTFT), then each level up to
    `top` streams (or only the level `only`) again under a `Watch`. A fresh connection per
    request for every system alike (llama-server cuts kept-alive connections)."""
    plan = run.plan
    top = top or max(plan.levels)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        stream = make_stream(session)
        warm_up = Plan(plan.tokens, plan.single_runs, plan.ttft_runs, (min(top, max(plan.levels)),))
        figures = await measure(stream, warm_up)
        skipped = [str(level) for level in plan.levels if level > top]
        system = System(figures=figures, note=f"not run at {', '.join(skipped)} streams: {top} slots, "
                        "the rest would be refused (503)" if skipped else "")
        for level in (level for level in plan.levels if level <= top and only in (None, level)):
            with Watch(run.gpu, processes, vram_before) as watch:
                runs = await asyncio.gather(*(stream(plan.tokens, 1000 * level + i) for i in range(level)))
            system.levels[level] = _level(runs, watch)
    return system


def _start_process(run: Run, command: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    run.bench.processes.append(process)
    return process


def run_server(run: Run) -> System:
    """(a): llama-server started afresh for each level N with `-np N` and `CTX_PER_SLOT` tokens
    per slot (continuous batching); single-stream and TTFT figures from the `-np 1` server."""
    if not run.server:
        return System(note="skipped: RBEE_LLAMA_SERVER not set")
    combined = System()
    for level in run.plan.levels:
        port = free_port()
        vram_before = run.gpu.memory_used()
        command = [run.server, "-m", str(run.model), "-ngl", run.gpu_layers, "-np", str(level),
                   "-c", str(level * CTX_PER_SLOT), "--cont-batching", "-fa", "on", "--ignore-eos",
                   "--host", "127.0.0.1", "--port", str(port)]
        process = _start_process(run, command, run.bench.workdir / f"llama-server-np{level}.log")
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_http(f"{base}/health", process, START_TIMEOUT_S)
            processes = [psutil.Process(process.pid)]
            measured = asyncio.run(_measure(run, lambda s, base=base: llama_cpp_server(s, base), processes,
                                            vram_before, top=level, only=level))
        finally:
            run.bench.stop_all()
        combined.levels.update(measured.levels)
        if combined.figures is None or level == 1:
            combined.figures = measured.figures
    return combined


def run_worker(run: Run) -> System:
    """(b): a standalone rbee worker."""
    vram_before = run.gpu.memory_used()
    extra = ["--backend", run.backend, "--ctx-size", str(CTX_PER_SLOT)]
    worker = worker_daemon(run.bench.workdir, run.model, run.rbee_slots, extra)
    run.bench.processes.append(worker.start())
    worker.wait_healthy(START_TIMEOUT_S)
    _wait_http(f"{worker.base_url}/v1/ready", worker.process, START_TIMEOUT_S)
    url = f"{worker.base_url}/v1/inference"
    processes = [psutil.Process(worker.pid)]
    return asyncio.run(_measure(run, lambda s: rbee_native(s, url, {"ignore_eos": True}), processes,
                                vram_before, run.rbee_slots))


def run_queen(run: Run) -> System:
    """(c): the queen starting its local hive, which spawns the worker on the first task."""
    vram_before = run.gpu.memory_used()
    extra = ["--worker-slots", str(run.rbee_slots), "--worker-ctx-size", str(CTX_PER_SLOT), "--start-hive",
             "--backend", run.backend]
    queen = queen_daemon(run.bench.workdir / "queen", extra=extra)
    run.bench.processes.append(queen.start(env=UNLIMITED))
    queen.wait_healthy(START_TIMEOUT_S)
    body = {"model": f"file://{run.model}", "ignore_eos": True}
    url = f"{queen.base_url}/v2/tasks"
    processes = [psutil.Process(queen.pid)]
    return asyncio.run(_measure(run, lambda s: rbee_native(s, url, body), processes, vram_before))


def parse_batched_bench(output: str) -> dict[int, float]:
    """Batch size → S_TG t/s from llama-batched-bench's Markdown table."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in output.splitlines() if line.lstrip().startswith("|")]
    header = next(row for row in rows if "S_TG t/s" in row)
    batch, rate = header.index("B"), header.index("S_TG t/s")
    return {int(row[batch]): float(row[rate]) for row in rows
            if len(row) == len(header) and re.fullmatch(r"\d+", row[batch])}


def run_batched_bench(run: Run) -> System:
    """(d): llama-batched-bench, prompts of `PROMPT_TOKENS`, a batch per level, `CTX_PER_SLOT`
    tokens of KV cache per sequence of the largest batch (as the servers get)."""
    if not run.batched_bench:
        return System(note="skipped: RBEE_LLAMA_BATCHED_BENCH not set")
    levels = run.plan.levels
    vram_before = run.gpu.memory_used()
    log = run.bench.workdir / "llama-batched-bench.log"
    command = [run.batched_bench, "-m", str(run.model), "-ngl", run.gpu_layers,
               "-c", str(max(levels) * CTX_PER_SLOT), "-b", "2048", "-ub", "512", "-npp", str(PROMPT_TOKENS),
               "-ntg", str(run.plan.tokens), "-npl", ",".join(map(str, levels)), "-fa", "on"]
    process = _start_process(run, command, log)
    with Watch(run.gpu, [psutil.Process(process.pid)], vram_before) as watch:
        code = process.wait(BATCHED_BENCH_TIMEOUT_S)
    if code != 0:
        raise RuntimeError(f"llama-batched-bench exited with {code}")
    rates = parse_batched_bench(log.read_text(errors="replace"))
    note = "S_TG t/s (decoding only: no HTTP, no sampling); GPU and CPU figures over its whole run"
    return System(levels={n: Level(rates[n], usage=watch.usage) for n in levels if n in rates}, note=note)


def _log_tails(workdir: Path) -> str:
    tails = []
    for log in sorted(workdir.rglob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-15:]
        tails.append(f"--- {log.relative_to(workdir)}\n" + "\n".join(lines))
    return "\n".join(tails)


def measure_model(name: str, args: argparse.Namespace, plan: Plan, gpu: Gpu, started: float) -> Model:
    """Every system on the synthetic model `name`; a system that fails is noted, not fatal."""
    model = synthetic_model.build(name, args.model_dir)
    print(f"{name}: {model} ready after {time.monotonic() - started:.0f} s", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"rbee-gpu-bench-{name}-"))
    run = Run(model, Bench(model, workdir, plan, 0, [], max(plan.levels)), gpu, args.backend, plan,
              args.llama_server, args.llama_batched_bench)
    systems: dict[str, System] = {}
    try:
        for label, measure_system in ((SERVER, run_server), (WORKER, run_worker), (QUEEN, run_queen),
                                      (CEILING, run_batched_bench)):
            try:
                systems[label] = measure_system(run)
            except Exception as error:
                print(f"{label} failed: {error}\n{_log_tails(workdir)}", flush=True)
                systems[label] = System(note=f"failed: {error}")
            finally:
                run.bench.stop_all()
            _progress(name, label, systems[label], started)
    finally:
        run.bench.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    shape = synthetic_model.SHAPES[name]
    return Model(name, shape.parameters(), model.stat().st_size, systems)


def _progress(model: str, label: str, system: System, started: float) -> None:
    rates = ", ".join(f"{n}: {level.tokens_per_s:.1f}" for n, level in system.levels.items())
    figures = system.figures
    single = f" single {figures.single_tokens_per_s:.1f} t/s, TTFT p50 {figures.ttft_p50_ms:.1f} ms;" \
        if figures else ""
    print(f"[{time.monotonic() - started:.0f} s] {model} {label}:{single} tokens/s by streams {{{rates}}}"
          f"{' ' + system.note if system.note else ''}", flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="1b,8b", help=f"of {', '.join(synthetic_model.SHAPES)}")
    parser.add_argument("--levels", default="1,16,64,128", help="concurrent streams to measure")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per stream")
    parser.add_argument("--ttft-runs", type=int, default=10)
    parser.add_argument("--single-runs", type=int, default=5,
                        help="single-stream runs; their median is the 1-stream goal's figure")
    parser.add_argument("--backend", default="cuda", choices=["cpu", "cuda", "metal"])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "gpu-bench.md")
    parser.add_argument("--model-dir", type=Path,
                        default=Path(os.environ.get("RBEE_GPU_DIR", "/tmp/rbee-gpu")) / "models",
                        help="where the synthetic models are cached")
    parser.add_argument("--llama-server", default=os.environ.get("RBEE_LLAMA_SERVER"))
    parser.add_argument("--llama-batched-bench", default=os.environ.get("RBEE_LLAMA_BATCHED_BENCH"))
    args = parser.parse_args(argv)
    unknown = set(args.models.split(",")) - set(synthetic_model.SHAPES)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}")
    if args.tokens + PROMPT_TOKENS + 8 > CTX_PER_SLOT:
        parser.error(f"--tokens must leave room for the prompt in {CTX_PER_SLOT} tokens per slot")
    return args


def _notes(plan: Plan, slots: int) -> list[str]:
    notes = [
        f"Streams: {plan.tokens} tokens each, `ignore_eos`, temperature 0.7, distinct ~{PROMPT_TOKENS}-token "
        f"prompts; TTFT at 1 stream from {plan.ttft_runs} runs, per level from that level's streams; a fresh "
        "connection per request for every system.",
        f"Sizing: llama-server is started afresh for each level N with `-np N -c N×{CTX_PER_SLOT} "
        f"--cont-batching -fa on` (its single-stream and TTFT figures from `-np 1`); rbee runs as deployed, "
        f"one worker with `--slots {slots} --ctx-size {CTX_PER_SLOT}` for every level; "
        f"llama-batched-bench gets `-c {max(plan.levels) * CTX_PER_SLOT}`.",
        "GPU busy %: NVML utilization sampled every 100 ms during the level, mean. VRAM: peak NVML memory "
        "used during the level minus that before the system started. Busiest thread: user+system CPU time "
        "of the measured process tree's busiest thread over the level ÷ wall time.",
    ]
    if slots < max(plan.levels):
        notes.append(f"rbee workers have at most {MAX_SLOTS} slots (`MAX_SLOTS`): above {slots} streams the "
                     "queen queues the rest while llama-server serves them all at once; the worker alone "
                     "would refuse them, so it is not run there.")
    return notes


def main(argv: list[str] | None = None) -> int:
    """Measure every model and system, print the report and write it to `--output`."""
    args = _parse(argv)
    levels = tuple(int(level) for level in args.levels.split(","))
    plan = Plan(tokens=args.tokens, single_runs=args.single_runs, ttft_runs=args.ttft_runs, levels=levels)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gpu = Gpu()
    started = time.monotonic()
    print(f"GPU: {gpu.name}; backend {args.backend}", flush=True)
    try:
        models = [measure_model(name, args, plan, gpu, started) for name in args.models.split(",")]
        command = " ".join(["python", "bench/gpu.py", *(sys.argv[1:] if argv is None else argv)])
        report = render(models, gpu.name, command, _notes(plan, min(max(levels), MAX_SLOTS)),
                        time.monotonic() - started)
    finally:
        gpu.close()
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    raise SystemExit(main())
