"""The systems `bench/serving.py` compares, each behind one `stream()` call, and the
measurement plan it runs against every one of them alike.

A stream is one completion request: its own prompt, `max_tokens`, temperature 0.7 and its
own seed, timed from the call to the first token and to the last. Prompts differ from the
second token on, so no system answers from a KV cache left by the previous request
(llama-cpp-python and llama-server reuse a cached prompt prefix).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

PROMPT = "Once upon a time, in a small village at the edge of a great forest, there lived"
TEMPERATURE = 0.7


def prompt_for(seed: int) -> str:
    """The prompt of the stream with this seed (distinct per stream, about 20 tokens)."""
    return f"Story {seed}. {PROMPT}"


@dataclass(frozen=True)
class Timed:
    """One stream: when it was asked for, when its first and last tokens came, how many."""

    started: float
    first: float
    ended: float
    tokens: int


Stream = Callable[[int, int], Awaitable[Timed]]
"""`stream(max_tokens, seed)`."""


@dataclass
class Figures:
    """What the plan measures of one system."""

    single_tokens_per_s: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    aggregate: dict[int, float]
    """Concurrent streams → tokens/s of all of them together."""
    tokens_per_stream: float
    """Mean tokens a stream of the concurrency runs produced (short when EOS came early)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (concurrency keys become strings)."""
        return {**asdict(self), "aggregate": {str(k): v for k, v in self.aggregate.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figures:
        """The inverse of `to_json`."""
        return cls(**{**data, "aggregate": {int(k): v for k, v in data["aggregate"].items()}})


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    tokens: int
    """Tokens per stream for the throughput figures."""
    single_runs: int
    ttft_runs: int
    levels: tuple[int, ...]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(stream: Stream, plan: Plan) -> Figures:
    """Warm up (one full stream, then the most concurrent streams briefly), then single-stream
    rate, time to first token, and aggregate rate per level."""
    await stream(plan.tokens, 0)
    await asyncio.gather(*(stream(8, 900 + i) for i in range(max(plan.levels))))
    single = [await stream(plan.tokens, run + 1) for run in range(plan.single_runs)]
    ttft = [await stream(4, 100 + run) for run in range(plan.ttft_runs)]
    aggregate: dict[int, float] = {}
    produced: list[int] = []
    for level in plan.levels:
        runs = await asyncio.gather(*(stream(plan.tokens, 1000 * level + i) for i in range(level)))
        wall = max(r.ended for r in runs) - min(r.started for r in runs)
        aggregate[level] = sum(r.tokens for r in runs) / wall
        produced.extend(r.tokens for r in runs)
    first_ms = [(r.first - r.started) * 1000 for r in ttft]
    return Figures(
        single_tokens_per_s=statistics.median(r.tokens / (r.ended - r.started) for r in single),
        ttft_p50_ms=statistics.median(first_ms),
        ttft_p95_ms=_percentile(first_ms, 0.95),
        aggregate=aggregate,
        tokens_per_stream=statistics.mean(produced),
    )


async def _sse_payloads(response: aiohttp.ClientResponse):
    """Each `data:` payload of an SSE answer as soon as its line arrives."""
    async for line in response.content:
        if line.startswith(b"data:"):
            yield line[5:].strip().decode()


def llama_cpp_server(session: aiohttp.ClientSession, base_url: str,
                     extra: dict[str, Any] | None = None) -> Stream:
    """`python -m llama_cpp.server` or llama.cpp's `llama-server`: POST /v1/completions, streaming."""

    async def stream(max_tokens: int, seed: int) -> Timed:
        body = {"prompt": prompt_for(seed), "max_tokens": max_tokens, "temperature": TEMPERATURE,
                "seed": seed, "stream": True, **(extra or {})}
        started = time.perf_counter()
        first, chunks, finish = 0.0, 0, None
        async with session.post(f"{base_url}/v1/completions", json=body) as response:
            response.raise_for_status()
            async for data in _sse_payloads(response):
                if data == "[DONE]":
                    break
                choice = json.loads(data)["choices"][0]
                if choice.get("text"):
                    chunks += 1
                    first = first or time.perf_counter()
                finish = choice.get("finish_reason") or finish
        tokens = max_tokens if finish == "length" else chunks
        return Timed(started, first or time.perf_counter(), time.perf_counter(), tokens)

    return stream


def rbee_native(session: aiohttp.ClientSession, url: str, extra: dict[str, Any]) -> Stream:
    """rbee's native event stream: a worker's /v1/inference or the queen's /v2/tasks."""

    async def stream(max_tokens: int, seed: int) -> Timed:
        body = {"prompt": prompt_for(seed), "max_tokens": max_tokens, "temperature": TEMPERATURE,
                "seed": seed, **extra}
        started = time.perf_counter()
        first, tokens = 0.0, 0
        async with session.post(url, json=body) as response:
            response.raise_for_status()
            async for data in _sse_payloads(response):
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if event["type"] == "token":
                    first = first or time.perf_counter()
                elif event["type"] == "end":
                    tokens = event["tokens_out"]
                elif event["type"] == "error":
                    raise RuntimeError(f"stream failed: {event}")
        return Timed(started, first or time.perf_counter(), time.perf_counter(), tokens)

    return stream


def in_process(model_path: str, threads: int, ctx: int) -> Stream:
    """llama-cpp-python in this process: one `Llama`, `generate()` with incremental
    detokenization, behind a lock (one `Llama` cannot serve two threads at once)."""
    import codecs

    import llama_cpp

    llama = llama_cpp.Llama(model_path=model_path, n_ctx=ctx, n_threads=threads,
                            n_threads_batch=threads, verbose=False)
    lock = threading.Lock()

    def generate(max_tokens: int, seed: int, started: float) -> Timed:
        with lock:
            prompt = llama.tokenize(prompt_for(seed).encode(), add_bos=True)
            llama.set_seed(seed)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            first, tokens = 0.0, 0
            for token in llama.generate(prompt, temp=TEMPERATURE, top_p=0.95, reset=True):
                if llama_cpp.llama_vocab_is_eog(llama._model.vocab, token):
                    break
                decoder.decode(llama.detokenize([token]))
                first = first or time.perf_counter()
                tokens += 1
                if tokens >= max_tokens:
                    break
        return Timed(started, first or time.perf_counter(), time.perf_counter(), tokens)

    async def stream(max_tokens: int, seed: int) -> Timed:
        return await asyncio.to_thread(generate, max_tokens, seed, time.perf_counter())

    return stream
