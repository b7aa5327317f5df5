"""Decode-loop benchmark: the batched engine alone (no HTTP), N sequences of M tokens at once.

Prints aggregate tokens/s and, per step, the decode loop thread's wall and CPU time split into
decode (`llama_decode`, and `llama_synchronize` where the engine waits for a GPU), sampling, token
rules (detokenize, stop sequences, emit) and the rest, plus the CPU time of the whole process.
The last line is the run as JSON, with a digest of every sequence's text: runs of the same seeds
with different engines should print the same digest.

Run: .venv/bin/python bench/decode_loop.py --model /tmp/gemma.gguf --streams 16 --tokens 64
     python3 bench/decode_loop.py --backend cuda --model PATH --streams 64 --tokens 128
`--engine-file OLD.py` measures another version of rbee/worker/batch_engine.py (for example
`git show HEAD~1:rbee/worker/batch_engine.py > /tmp/old_batch_engine.py`); `--overlap` forces
the GPU's order (tokens handed out while the next batch decodes) on the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import importlib.util
import json
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import llama_cpp

from rbee.common.wire_requests import SamplingParams
from rbee.worker import batch_engine
from rbee.worker.faults import Faults
from rbee.worker.generation import Job, LoadSpec, Outcome
from rbee.worker.gpu_params import ALL_LAYERS
from rbee.worker.token_rules import TokenRules

DECODE_THREAD = "decode-loop"


class Phases:
    """Wall and CPU seconds the decode loop's thread spends in each phase, outermost call only."""

    def __init__(self) -> None:
        self._depth = threading.local()
        self.reset()

    def reset(self) -> None:
        """Forget what was timed so far."""
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.steps = 0

    def wrap(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """`function`, timed as `phase` when the decode loop's thread calls it outside another phase."""

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name != DECODE_THREAD or getattr(self._depth, "n", 0):
                return function(*args, **kwargs)
            self._depth.n = 1
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.wall[phase] += time.perf_counter() - wall
                self.cpu[phase] += time.thread_time() - cpu
                self._depth.n = 0

        return timed

    def instrument(self, module: ModuleType) -> None:
        """Time the phases of `module`'s engine (the current one or an older version)."""
        engine_class = module.BatchEngine
        engine_class._step = self._step_wrap(engine_class._step)
        llama_cpp.llama_decode = self.wrap("decode", llama_cpp.llama_decode)
        llama_cpp.llama_synchronize = self.wrap("decode", llama_cpp.llama_synchronize)
        if hasattr(engine_class, "_sample"):
            engine_class._sample = self.wrap("sampling", engine_class._sample)
        else:
            llama_cpp.llama_sampler_sample = self.wrap("sampling", llama_cpp.llama_sampler_sample)
        TokenRules.accept = self.wrap("rules", TokenRules.accept)

    def _step_wrap(self, step: Callable[..., Any]) -> Callable[..., Any]:
        """The whole step, timed apart from the phases inside it."""
        phases = self

        @functools.wraps(step)
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return step(*args, **kwargs)
            finally:
                phases.wall["step"] += time.perf_counter() - wall
                phases.cpu["step"] += time.thread_time() - cpu
                phases.steps += 1

        return timed

    def per_step_ms(self) -> dict[str, dict[str, float]]:
        """Milliseconds per step of each phase (`other`: the step less its phases)."""
        steps = max(1, self.steps)
        report = {}
        for kind, table in (("wall", self.wall), ("cpu", self.cpu)):
            parts = {p: table[p] for p in ("decode", "sampling", "rules")}
            parts["other"] = table["step"] - sum(parts.values())
            parts["step"] = table["step"]
            report[kind] = {p: round(1000 * v / steps, 3) for p, v in parts.items()}
        return report


def _engine_module(path: str | None) -> ModuleType:
    if path is None:
        return batch_engine
    spec = importlib.util.spec_from_file_location("rbee.worker._bench_batch_engine", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _params(args: argparse.Namespace, stream: int) -> SamplingParams:
    temperature = 0.0 if args.greedy else 0.7
    return SamplingParams(max_tokens=args.tokens, temperature=temperature, seed=1000 + stream,
                          ignore_eos=True)


@dataclass(frozen=True)
class _Gate(Faults):
    """Holds the decode loop at the next sequence joining until `release` is set, so that every
    stream queued meanwhile joins in the same step (the same batches in every run)."""

    release: threading.Event = field(default_factory=threading.Event)
    reached: threading.Event = field(default_factory=threading.Event)

    def on_generation_start(self) -> None:
        if not self.release.is_set():
            self.reached.set()
            self.release.wait()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load the engine, run every stream at once, return the figures."""
    module = _engine_module(args.engine_file)
    if args.overlap:
        module._overlaps = lambda spec: True
    phases = Phases()
    phases.instrument(module)
    gpu_layers = ALL_LAYERS if args.backend == "cuda" else 0
    spec = LoadSpec(args.model, args.streams, args.ctx, args.threads, gpu_layers=gpu_layers)
    gate = _Gate()
    gate.release.set()
    engine = asyncio.run(module.BatchEngine.load(spec, gate, lambda _: None))
    texts: list[list[str]] = [[] for _ in range(args.streams)]
    try:
        warm_up = SamplingParams(max_tokens=8, ignore_eos=True)
        engine.start(0, Job(engine.tokenize("Warm up", False), warm_up, (), threading.Event(),
                            lambda i, t, lp: None)).result()
        gate.release.clear()
        futures: list[Future[Outcome]] = []
        for stream in range(args.streams):
            prompt = engine.tokenize(f"Story {stream}: once upon a time, in a land far away, there was",
                                     False)
            job = Job(prompt, _params(args, stream), (), threading.Event(),
                      lambda i, t, lp, out=texts[stream]: out.append(t))
            futures.append(engine.start(stream, job))
        gate.reached.wait()
        phases.reset()
        cpu, wall = time.process_time(), time.perf_counter()
        gate.release.set()
        outcomes = [f.result() for f in futures]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        engine.shutdown()
    tokens = sum(o.tokens_out for o in outcomes)
    digest = hashlib.sha256("\x00".join("".join(t) for t in texts).encode()).hexdigest()[:16]
    return {
        "engine": args.engine_file or "rbee/worker/batch_engine.py",
        "overlap": bool(args.overlap or spec.on_gpu),
        "backend": args.backend,
        "streams": args.streams,
        "tokens": tokens,
        "seconds": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
        "steps": phases.steps,
        "process_cpu_per_step_ms": round(1000 * cpu / max(1, phases.steps), 3),
        "per_step_ms": phases.per_step_ms(),
        "digest": digest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--backend", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64, help="tokens per stream")
    parser.add_argument("--ctx", type=int, default=512, help="context tokens per stream")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the engine's)")
    parser.add_argument("--greedy", action="store_true", help="temperature 0 instead of 0.7")
    parser.add_argument("--overlap", action="store_true", help="the GPU's order on any backend")
    parser.add_argument("--engine-file", default=None, help="another batch_engine.py to measure")
    figures = run(parser.parse_args())
    print(f"{figures['engine']} ({figures['backend']}, overlap {figures['overlap']}): "
          f"{figures['streams']} streams, {figures['tokens']} tokens in {figures['seconds']} s = "
          f"{figures['tokens_per_s']} tokens/s, {figures['steps']} steps")
    for kind in ("wall", "cpu"):
        parts = ", ".join(f"{p} {v}" for p, v in figures["per_step_ms"][kind].items())
        print(f"  decode thread {kind} ms/step: {parts}")
    print(f"  process CPU ms/step (all threads): {figures['process_cpu_per_step_ms']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
