"""Multi-turn bench: time to first token per turn of chat conversations, rbee through the queen
against llama.cpp's llama-server.

A conversation has `TURNS` turns; each turn appends about 40 tokens of user text to the
history, asks for `ANSWER_TOKENS` tokens (EOS ignored, temperature 0.7, a seed per request)
and appends the answer, as chat clients do, so every request resends the whole conversation
and only a server that reuses the cached prefix keeps time to first token flat. Gemma 3 270M
is a base model without a chat template: rbee's chat route would render it as rbee's plain
transcript (with implicit `\\nUser:` stops), llama-server's as ChatML. So that both get the
same prompt and answers of the same length, the client renders the transcript itself with
rbee's fallback (`render_fallback`) and sends it whole on the completions route of both.
Figures: per turn, the p50 over the conversations of a level (1 conversation: several in a
row; N: all at once), each request on a fresh connection.

Run alone: .venv/bin/python bench/multiturn.py [--tiny] [--without-llama-server]
`bench/serving.py` runs it too and puts its table and goals in the report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from rbee.worker.chat_prompt import render_fallback

TURNS = 8
ANSWER_TOKENS = 64
TEMPERATURE = 0.7
LEVELS = (1, 8)
SENTENCES = (
    "I am planning a long walk through the hills next weekend and I would like some advice.",
    "The weather report says it may rain in the afternoon, so tell me what I should pack.",
    "My friend wants to bring her dog along, and I wonder whether the trail allows that.",
    "We will probably stop for lunch near the old stone bridge by the river, if it is open.",
    "Could you describe what kind of birds we might see in the forest at this time of year?",
    "After the walk we want to cook dinner together, something simple with fresh vegetables.",
    "The last time I went there I got lost near the lake, so explain how to find the path.",
    "Finally, please summarise the plan for the whole day in a few short, clear sentences.",
)


def user_text(conversation: int, turn: int) -> str:
    """The user's message of `turn` (0-based): about 40 tokens, distinct per conversation."""
    first, second = SENTENCES[turn % len(SENTENCES)], SENTENCES[(turn + 3) % len(SENTENCES)]
    return f"(Talk {conversation}, message {turn + 1}.) {first} {second}"


def printable(answer: str) -> str:
    """The answer as kept in the history: without the control and format characters rbee refuses
    in a prompt (the tiny model's random weights produce them)."""
    return "".join(char for char in answer if char.isprintable() or char in "\n\t")


def transcript(history: list[dict[str, str]]) -> str:
    """The prompt of a request: the conversation so far in rbee's plain chat transcript."""
    return render_fallback(history).text


@dataclass(frozen=True)
class Turn:
    """One request of a conversation."""

    ttft_ms: float
    prompt_chars: int


@dataclass
class Result:
    """One system's figures: conversations at once → per-turn p50 time to first token (ms)."""

    ttft_p50_ms: dict[int, list[float]] = field(default_factory=dict)
    prompt_chars: list[int] = field(default_factory=list)
    """Characters of each turn's prompt (the same for every system and conversation length)."""


Completion = tuple[float, str]
"""Time to the first text (s), the whole answer."""


async def complete(session: aiohttp.ClientSession, url: str, body: dict) -> Completion:
    """One streamed OpenAI completion: time to its first non-empty text and all of its text."""
    started = time.perf_counter()
    first, parts = 0.0, []
    async with session.post(url, json={**body, "stream": True}) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}: {(await response.text())[:500]}")
        async for line in response.content:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip().decode()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(f"stream failed: {chunk}")
            text = chunk["choices"][0].get("text") if chunk.get("choices") else None
            if text:
                first = first or time.perf_counter()
                parts.append(text)
    return (first or time.perf_counter()) - started, "".join(parts)


async def conversation(session: aiohttp.ClientSession, url: str, body: dict, index: int, turns: int,
                       answer_tokens: int) -> list[Turn]:
    """One conversation of `turns` requests, each resending the history with the new message."""
    history: list[dict[str, str]] = []
    measured = []
    for turn in range(turns):
        history.append({"role": "user", "content": user_text(index, turn)})
        prompt = transcript(history)
        request = {**body, "prompt": prompt, "max_tokens": answer_tokens, "temperature": TEMPERATURE,
                   "seed": 1000 * index + turn, "ignore_eos": True}
        ttft, answer = await complete(session, url, request)
        history.append({"role": "assistant", "content": printable(answer)})
        measured.append(Turn(ttft * 1000, len(prompt)))
    return measured


async def measure(url: str, body: dict, levels: tuple[int, ...], turns: int, answer_tokens: int,
                  single_runs: int) -> Result:
    """Per level N: N conversations at once (N = 1: `single_runs` one after another), the p50
    time to first token of each turn over them. A warm-up conversation of two turns first."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    result = Result()
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await conversation(session, url, body, 9999, 2, answer_tokens)
        for level in levels:
            first = 100 * level
            if level == 1:
                talks = [await conversation(session, url, body, first + run, turns, answer_tokens)
                         for run in range(single_runs)]
            else:
                talks = await asyncio.gather(*(conversation(session, url, body, first + i, turns,
                                                            answer_tokens) for i in range(level)))
            result.ttft_p50_ms[level] = [statistics.median(talk[turn].ttft_ms for talk in talks)
                                         for turn in range(turns)]
            result.prompt_chars = [turn.prompt_chars for turn in talks[0]]
    return result


@dataclass(frozen=True)
class Settings:
    """How much the multi-turn bench measures."""

    levels: tuple[int, ...] = LEVELS
    turns: int = TURNS
    answer_tokens: int = ANSWER_TOKENS
    single_runs: int = 3


def run_rbee(bench, settings: Settings) -> Result:
    """rbee through the queen (local hive, worker with a slot per conversation of the largest
    level, the serving bench's context per slot), its /v1/completions."""
    from serving import CTX, START_TIMEOUT_S, UNLIMITED

    from rbee.testing.cluster import queen_daemon

    slots = max(settings.levels)
    extra = ["--worker-slots", str(slots), "--worker-ctx-size", str(CTX), "--start-hive"]
    queen = queen_daemon(bench.workdir / "multiturn-queen", extra=extra)
    queen.prefix = bench.prefix
    bench.processes.append(queen.start(env={**UNLIMITED, "RBEE_WORKER_THREADS": str(bench.threads)}))
    queen.wait_healthy(START_TIMEOUT_S)
    body = {"model": f"file://{bench.model}"}
    try:
        return asyncio.run(measure(f"{queen.base_url}/v1/completions", body, settings.levels, settings.turns,
                                   settings.answer_tokens, settings.single_runs))
    finally:
        bench.stop_all()


def run_llama_server(bench, settings: Settings) -> Result:
    """llama-server with a slot per conversation of the largest level and the same context per
    slot and threads, its /v1/completions (`cache_prompt` on: its default)."""
    from serving import start_llama_server

    base = start_llama_server(bench, max(settings.levels), "multiturn-llama-server.log")
    try:
        return asyncio.run(measure(f"{base}/v1/completions", {}, settings.levels, settings.turns,
                                   settings.answer_tokens, settings.single_runs))
    finally:
        bench.stop_all()


def run(bench, settings: Settings) -> dict[str, Result]:
    """Both systems (llama-server only when the bench has its binary and it runs)."""
    results = {"rbee through the queen": run_rbee(bench, settings)}
    if bench.llama_server is not None:
        try:
            results["llama-server"] = run_llama_server(bench, settings)
        except (RuntimeError, aiohttp.ClientError) as error:
            print(f"multi-turn llama-server failed (left out): {error}", flush=True)
    return results


def table(results: dict[str, Result], settings: Settings) -> list[str]:
    """The Markdown table: a row per turn, a column per system and level."""
    columns = [(name, level) for name, result in results.items() for level in result.ttft_p50_ms]
    header = ["turn", "prompt chars (one conversation)",
              *(f"{name}, {level} conversation{'s' if level > 1 else ''}" for name, level in columns)]
    chars = next(iter(results.values())).prompt_chars
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for turn in range(settings.turns):
        cells = [f"{results[name].ttft_p50_ms[level][turn]:.1f}" for name, level in columns]
        lines.append("| " + " | ".join([str(turn + 1), str(chars[turn]), *cells]) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the multi-turn bench alone and print its table."""
    import serving
    from serving import Bench
    from serving_clients import Plan

    from rbee.testing.tiny_model import build_tiny_gguf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="smoke run on the tiny model")
    parser.add_argument("--model", type=Path, help="GGUF to measure (default: Gemma 3 270M Q4_K_M)")
    parser.add_argument("--without-llama-server", action="store_true", help="measure rbee only")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--runs", type=int, help="conversations one after another for 1 at once (default 3)")
    args = parser.parse_args(argv)
    settings = smoke_settings() if args.tiny else Settings(single_runs=args.runs or 3)
    workdir = Path(tempfile.mkdtemp(prefix="rbee-multiturn-bench-"))
    try:
        model = args.model or (build_tiny_gguf(workdir / "tiny.gguf") if args.tiny
                               else serving._default_model(workdir))
        binary = None if args.without_llama_server else serving.llama_server.locate()
        plan = Plan(settings.answer_tokens, settings.single_runs, 0, settings.levels)
        bench = Bench(model, workdir, plan, args.threads, [], max(settings.levels), binary)
        try:
            results = run(bench, settings)
        finally:
            bench.stop_all()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(table(results, settings)))
    return 0


def smoke_settings() -> Settings:
    """The `--tiny` run: 1 and 2 conversations of 3 turns of 8 tokens, 1 run."""
    return Settings(levels=(1, 2), turns=3, answer_tokens=8, single_runs=1)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
