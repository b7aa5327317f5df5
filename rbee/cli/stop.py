"""`rbee stop MODEL|WORKER`: drain and stop a worker, or every worker of a model, through the queen."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from rbee.cli.failures import CommandFailed
from rbee.cli.queen_access import call_queen, queen_options

STOP_WAIT_S = 120.0
"""How long `rbee stop` waits for the stopped workers to leave the queen's list."""
POLL_S = 0.5


def register(sub: argparse._SubParsersAction) -> None:
    """Add `rbee stop`."""
    stop = sub.add_parser("stop", help="drain and stop a worker, or every worker of a model")
    stop.add_argument("target", help="a worker id (as `rbee status` lists it) or a model name")
    stop.add_argument("--no-wait", action="store_true",
                      help="return once the workers are told to stop (default: wait until they are gone)")
    queen_options(stop)
    stop.set_defaults(func=run_stop)


def chosen(workers: list[dict[str, Any]], target: str) -> list[dict[str, Any]]:
    """The worker whose id is `target`, else every worker of the model `target`."""
    by_id = [w for w in workers if w["worker_id"] == target]
    return by_id or [w for w in workers if w["model"] == target]


def run_stop(args: argparse.Namespace) -> int:
    """Tell the queen to stop each chosen worker, then wait until none of them is listed."""
    workers = chosen(call_queen(args, "GET", "/v2/workers/list")["workers"], args.target)
    if not workers:
        raise CommandFailed(f"WORKER_NOT_FOUND: no worker has the id {args.target!r} and none runs a "
                            "model of that name (`rbee status` lists them)")
    for worker in workers:
        call_queen(args, "POST", "/v2/workers/shutdown", {"worker_id": worker["worker_id"]})
        print(f"stopping worker {worker['worker_id']} ({worker['model']})", file=sys.stderr)
    if args.no_wait:
        return 0
    wanted = {w["worker_id"] for w in workers}
    deadline = time.monotonic() + STOP_WAIT_S
    while left := wanted & {w["worker_id"] for w in call_queen(args, "GET", "/v2/workers/list")["workers"]}:
        if time.monotonic() > deadline:
            raise CommandFailed(f"workers still running after {STOP_WAIT_S:.0f} s: {', '.join(sorted(left))}")
        time.sleep(POLL_S)
    print(f"stopped {len(wanted)} worker{'s' if len(wanted) != 1 else ''}")
    return 0
