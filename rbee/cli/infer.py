"""`rbee infer`: stream one answer from the queen to the terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from rbee.cli.failures import CommandFailed, reaching
from rbee.cli.queen_access import queen_options
from rbee.common import sse, wire
from rbee.common.defaults import BACKEND_POLICIES
from rbee.common.secrets import load_token
from rbee.common.wire_requests import TaskRequest

EXIT_INTERRUPTED = 130


def register(sub: argparse._SubParsersAction) -> None:
    """Add `rbee infer`."""
    infer = sub.add_parser("infer", help="run a prompt and print tokens as they arrive")
    infer.add_argument("--model", default="default", help="catalog name or model ref")
    infer.add_argument("--prompt", default=None,
                       help="the prompt (default: read from stdin until its end; `-` too)")
    infer.add_argument("--max-tokens", type=int, default=None,
                       help="default: until the end of text or a full context")
    infer.add_argument("--temperature", type=float, default=None, help="default 0.7")
    infer.add_argument("--seed", type=int, default=None)
    infer.add_argument("--ignore-eos", action="store_true",
                       help="keep generating past end-of-text (benchmarks)")
    infer.add_argument("--node", default=None,
                       help="node to run on (`localhost` or a name from `rbee setup list-nodes`; "
                       "default: the queen chooses)")
    infer.add_argument("--backend", choices=BACKEND_POLICIES, default=None,
                       help="auto: a GPU, else the CPU; a named backend or fail (never a silent CPU "
                       "fallback); default: the queen's policy for the model")
    queen_options(infer)
    infer.add_argument("--stats", action="store_true",
                       help="print time to first token and tokens/s to stderr")
    infer.set_defaults(func=run_infer)


@dataclass
class _Progress:
    task_id: str | None = None
    first_token_at: float | None = None
    served_by: str = ""


class InferFailed(CommandFailed):
    """The queen refused or aborted the task."""


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _prompt(args: argparse.Namespace) -> str:
    """`--prompt`, or all of stdin when it is absent or `-` (a terminal gets a hint first)."""
    if args.prompt is not None and args.prompt != "-":
        return args.prompt
    if sys.stdin.isatty():
        print("reading the prompt from stdin; end it with Ctrl+D", file=sys.stderr)
    return sys.stdin.read().strip()


def _task_body(args: argparse.Namespace) -> dict[str, object]:
    """The task, validated here as the queen will (so a bad flag fails before any connection)."""
    given = {name: getattr(args, name) for name in
             ("model", "max_tokens", "temperature", "seed", "ignore_eos", "node", "backend")}
    given["prompt"] = _prompt(args)
    return TaskRequest.parse(given, label=_flag).model_dump(mode="json", exclude_none=True)


def _auth_headers(token_file: Path | None) -> dict[str, str]:
    token = load_token("queen", token_file)
    return {"Authorization": f"Bearer {token.value}"} if token else {}


async def _stream(args: argparse.Namespace, progress: _Progress, headers: dict[str, str]) -> None:
    body = _task_body(args)
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=None, connect=5)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        async with session.post(f"{args.queen.rstrip('/')}/v2/tasks", json=body) as response:
            if response.status != 200:
                raise InferFailed(await _error_text(response))
            async for received in sse.iter_events(response):
                match wire.parse_event(received):
                    case wire.Started(task_id=task_id, node=node, worker_id=worker_id) as placed:
                        progress.task_id = task_id
                        progress.served_by = f"node {node}, worker {worker_id} on {_placed_on(placed)}"
                    case wire.Token(token=text):
                        progress.first_token_at = progress.first_token_at or time.monotonic()
                        sys.stdout.write(text)
                        sys.stdout.flush()
                    case wire.End() as end:
                        sys.stdout.write("\n")
                        sys.stdout.flush()
                        if args.stats:
                            _print_stats(end, started, progress)
                    case wire.Error(code=code, message=message):
                        raise InferFailed(f"{code}: {message}")


def _placed_on(started: wire.Started) -> str:
    """`cpu`, `cuda:0`: where the worker runs."""
    backend = started.backend or "?"
    return backend if started.device is None else f"{backend}:{started.device}"


def _print_stats(end: wire.End, started: float, progress: _Progress) -> None:
    first = progress.first_token_at or time.monotonic()
    print(
        f"[{end.tokens_out} tokens, stop: {end.stop_reason}, time to first token "
        f"{(first - started) * 1000:.0f} ms, {end.tokens_per_second} tokens/s, "
        f"{progress.served_by}]",
        file=sys.stderr,
    )


async def _error_text(response: aiohttp.ClientResponse) -> str:
    try:
        error = json.loads(await response.read())["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"the queen answered HTTP {response.status}"


async def _cancel(queen: str, task_id: str, headers: dict[str, str]) -> None:
    timeout = aiohttp.ClientTimeout(total=3)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        async with session.delete(f"{queen.rstrip('/')}/v2/tasks/{task_id}"):
            pass


def run_infer(args: argparse.Namespace) -> int:
    """Stream the answer; exit 1 on error, 130 after Ctrl+C (the task is cancelled)."""
    progress = _Progress()
    headers = _auth_headers(args.token_file)
    loop = asyncio.new_event_loop()
    task = loop.create_task(_stream(args, progress, headers))
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        with reaching("queen", args.queen):
            loop.run_until_complete(task)
        return 0
    except asyncio.CancelledError:
        sys.stdout.write("\n")
        if progress.task_id:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                loop.run_until_complete(_cancel(args.queen, progress.task_id, headers))
        print("cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    except sse.StreamTruncated:
        raise CommandFailed("the queen closed the stream before the answer ended") from None
    finally:
        loop.close()
