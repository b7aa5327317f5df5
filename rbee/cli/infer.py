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

from rbee.cli.queen_access import queen_options
from rbee.common import sse
from rbee.common.errors import ApiError
from rbee.common.secrets import SecretError, load_token
from rbee.common.validation import MAX_TOKENS_LIMIT, check_model_ref, check_node_name

EXIT_INTERRUPTED = 130


def register(sub: argparse._SubParsersAction) -> None:
    """Add `rbee infer`."""
    infer = sub.add_parser("infer", help="run a prompt and print tokens as they arrive")
    infer.add_argument("--model", default="default", help="catalog name or model ref")
    infer.add_argument("--prompt", required=True)
    infer.add_argument("--max-tokens", type=int, default=128)
    infer.add_argument("--temperature", type=float, default=0.7)
    infer.add_argument("--seed", type=int, default=None)
    infer.add_argument("--ignore-eos", action="store_true",
                       help="keep generating past end-of-text (benchmarks)")
    infer.add_argument("--node", default=None,
                       help="node to run on (`localhost` or a name from `rbee setup list-nodes`; "
                       "default: the queen chooses)")
    infer.add_argument("--backend", choices=["cpu", "cuda", "metal"], default="cpu",
                       help="run on this backend or fail (never a silent CPU fallback)")
    queen_options(infer)
    infer.add_argument("--stats", action="store_true",
                       help="print time to first token and tokens/s to stderr")
    infer.set_defaults(func=run_infer)


@dataclass
class _Progress:
    task_id: str | None = None
    first_token_at: float | None = None
    served_by: str = ""


class InferFailed(Exception):
    """The queen refused or aborted the task."""


def _task_body(args: argparse.Namespace) -> dict[str, object]:
    check_model_ref(args.model)
    if not 1 <= args.max_tokens <= MAX_TOKENS_LIMIT:
        raise InferFailed(f"--max-tokens must be between 1 and {MAX_TOKENS_LIMIT}")
    if not 0.0 <= args.temperature <= 2.0:
        raise InferFailed("--temperature must be between 0 and 2")
    body: dict[str, object] = {
        "model": args.model,
        "prompt": args.prompt,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "ignore_eos": args.ignore_eos,
        "backend": args.backend,
    }
    if args.seed is not None:
        body["seed"] = args.seed
    if args.node is not None:
        body["node"] = check_node_name("--node", args.node)
    return body


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
            async for event in sse.iter_events(response):
                kind = event.get("type")
                if kind == "started":
                    progress.task_id = event["task_id"]
                    progress.served_by = f"node {event.get('node')}, worker {event.get('worker_id')}"
                elif kind == "token":
                    progress.first_token_at = progress.first_token_at or time.monotonic()
                    sys.stdout.write(event["token"])
                    sys.stdout.flush()
                elif kind == "end":
                    sys.stdout.write("\n")
                    sys.stdout.flush()
                    if args.stats:
                        _print_stats(event, started, progress)
                elif kind == "error":
                    raise InferFailed(f"{event['code']}: {event['message']}")


def _print_stats(end: dict[str, object], started: float, progress: _Progress) -> None:
    first = progress.first_token_at or time.monotonic()
    print(
        f"[{end['tokens_out']} tokens, stop: {end['stop_reason']}, time to first token "
        f"{(first - started) * 1000:.0f} ms, {end.get('tokens_per_second', 0)} tokens/s, "
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
    try:
        headers = _auth_headers(args.token_file)
    except SecretError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    loop = asyncio.new_event_loop()
    task = loop.create_task(_stream(args, progress, headers))
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        loop.run_until_complete(task)
        return 0
    except asyncio.CancelledError:
        sys.stdout.write("\n")
        if progress.task_id:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                loop.run_until_complete(_cancel(args.queen, progress.task_id, headers))
        print("cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (InferFailed, ApiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"error: cannot reach the queen at {args.queen} ({exc}); is `rbee up` running?",
              file=sys.stderr)
        return 1
    except sse.StreamTruncated:
        print("error: the queen closed the stream before the answer ended", file=sys.stderr)
        return 1
    finally:
        loop.close()
