"""`rbee logs --node N [--follow]`: a node's hive and worker logs, through the queen."""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp

from rbee.cli.failures import CommandFailed, reaching
from rbee.cli.queen_access import queen_options, queen_target
from rbee.common import sse
from rbee.common.http import raise_for_error
from rbee.common.validation import check_node_name

EXIT_INTERRUPTED = 130


def register(sub: argparse._SubParsersAction) -> None:
    """Add `rbee logs`."""
    logs = sub.add_parser("logs", help="print a node's hive and worker logs (through the queen)")
    logs.add_argument("--node", required=True,
                      help="`localhost` or a node of `rbee setup list-nodes`")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until Ctrl+C")
    logs.add_argument("--lines", "-n", type=int, default=100, help="lines of each log to print first")
    logs.add_argument("--source", default=None, help="only this log: `hive` or a worker id")
    queen_options(logs)
    logs.set_defaults(func=run_logs)


async def _print_logs(queen: str, headers: dict[str, str], params: dict[str, str]) -> None:
    timeout = aiohttp.ClientTimeout(total=None, connect=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(f"{queen}/v2/logs", params=params, headers=headers) as response:
            await raise_for_error(response, "the queen")
            async for event in sse.iter_events(response):
                print(f"{event['source']} | {event['line']}", flush=True)


def run_logs(args: argparse.Namespace) -> int:
    """Print the logs; exit 130 after Ctrl+C (errors end in `main`)."""
    queen, headers = queen_target(args)
    params = {"node": check_node_name("--node", args.node), "lines": str(args.lines),
              "follow": "true" if args.follow else "false"}
    if args.source is not None:
        params["source"] = args.source
    loop = asyncio.new_event_loop()
    task = loop.create_task(_print_logs(queen, headers, params))
    loop.add_signal_handler(signal.SIGINT, task.cancel)  # also where SIGINT was inherited ignored
    try:
        with reaching("queen", queen):
            loop.run_until_complete(task)
        return 0
    except asyncio.CancelledError:
        return EXIT_INTERRUPTED
    except sse.StreamTruncated:
        raise CommandFailed("the log stream ended early (the queen or the hive stopped)") from None
    finally:
        loop.close()
