"""`rbee run MODEL`: an interactive chat with a model through the queen's OpenAI route.

The whole conversation goes with every turn (the queen renders it with the model's chat
template; a worker reuses the cached prefix). Answers are shown and kept without control
characters or bidi overrides. Ctrl+C while an answer streams stops that answer and keeps the
session (the part already shown stays in the history; a turn that got no answer is dropped);
Ctrl+D, `/bye` or the end of piped input ends it. `/clear` starts the conversation afresh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import dataclass
from typing import Any

import aiohttp

from rbee.cli.failures import CommandFailed, reaching
from rbee.cli.queen_access import queen_options, queen_target
from rbee.common import sse
from rbee.common.http import raise_for_error
from rbee.common.validation import check_model_ref, without_forbidden_chars

LEAVE = ("/bye", "/exit")
CLEAR = "/clear"
PROMPT = ">>> "


def register(sub: argparse._SubParsersAction) -> None:
    """Add `rbee run`."""
    run = sub.add_parser("run", help="chat with a model (Ctrl+C stops an answer, Ctrl+D or /bye leaves)")
    run.add_argument("model", help="catalog name or model ref")
    run.add_argument("--system", default=None, help="a system message that opens the conversation")
    run.add_argument("--max-tokens", type=int, default=None, help="longest answer (default: the model's)")
    run.add_argument("--temperature", type=float, default=None)
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--stats", action="store_true", help="print each turn's token counts to stderr")
    queen_options(run)
    run.set_defaults(func=run_chat)


@dataclass
class Turn:
    """What one answer left: its text, whether Ctrl+C cut it, the queen's token counts."""

    text: str = ""
    stopped: bool = False
    usage: dict[str, int] | None = None


class Conversation:
    """The messages sent with each turn."""

    def __init__(self, system: str | None) -> None:
        self._opening = [{"role": "system", "content": system}] if system else []
        self.messages: list[dict[str, str]] = list(self._opening)

    def clear(self) -> None:
        """Back to the opening (the system message, if any)."""
        self.messages = list(self._opening)


def _body(args: argparse.Namespace, messages: list[dict[str, str]]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": args.model, "messages": messages, "stream": True,
                            "stream_options": {"include_usage": True}}
    for field in ("max_tokens", "temperature", "seed"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    return body


async def _answer(session: aiohttp.ClientSession, queen: str, body: dict[str, Any], turn: Turn) -> None:
    """Stream one answer to stdout, collecting it into `turn`."""
    async with session.post(f"{queen}/v1/chat/completions", json=body) as response:
        await raise_for_error(response, "the queen")
        async for chunk in sse.iter_events(response):
            if chunk.get("usage"):
                turn.usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                text = without_forbidden_chars((choice.get("delta") or {}).get("content") or "")
                turn.text += text
                sys.stdout.write(text)
                sys.stdout.flush()


def _one_turn(
    args: argparse.Namespace, queen: str, headers: dict[str, str], messages: list[dict[str, str]]
) -> Turn:
    """Run one answer on its own event loop; SIGINT cancels it (and only it)."""
    turn = Turn()

    async def stream() -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=5)
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            await _answer(session, queen, _body(args, messages), turn)

    loop = asyncio.new_event_loop()
    task = loop.create_task(stream())
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        with reaching("queen", queen):
            loop.run_until_complete(task)
    except asyncio.CancelledError:
        turn.stopped = True
    except sse.StreamTruncated:
        raise CommandFailed("the queen closed the stream before the answer ended") from None
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.close()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return turn


def _read_line(interactive: bool) -> str | None:
    """The next line the user typed (None at the end of input); Ctrl+C at the prompt clears it."""
    while True:
        try:
            return input(PROMPT if interactive else "")
        except EOFError:
            return None
        except KeyboardInterrupt:
            print("\n(Ctrl+D or /bye leaves)", file=sys.stderr)


def _report(turn: Turn) -> None:
    usage = turn.usage or {}
    print(json.dumps({"prompt_tokens": usage.get("prompt_tokens"),
                      "completion_tokens": usage.get("completion_tokens"), "stopped": turn.stopped}),
          file=sys.stderr)


def run_chat(args: argparse.Namespace) -> int:
    """Read a line, stream the answer, repeat until the end of input."""
    check_model_ref(args.model)
    queen, headers = queen_target(args)
    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())
    conversation = Conversation(args.system)
    while (line := _read_line(interactive)) is not None:
        text = line.strip()
        if text in LEAVE:
            break
        if text == CLEAR:
            conversation.clear()
            continue
        if not text:
            continue
        asked = {"role": "user", "content": text}
        turn = _one_turn(args, queen, headers, [*conversation.messages, asked])
        if turn.text.strip():
            conversation.messages += [asked, {"role": "assistant", "content": turn.text}]
        if turn.stopped:
            print("[answer stopped]", file=sys.stderr)
        if args.stats:
            _report(turn)
    return 0
