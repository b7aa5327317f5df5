"""`rbee status`: the cluster as the queen sees it (nodes, hives, workers, models) as terminal
tables, or as the queen's JSON document with `--json` for scripts."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import aiohttp
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rbee.cli.failures import reaching
from rbee.cli.queen_access import queen_options, queen_target
from rbee.common.http import get_json
from rbee.common.wire import WorkerState

FOLDED_COLUMNS = frozenset({"Model", "Hive URL"})
STATE_STYLES = {WorkerState.IDLE: "green", WorkerState.BUSY: "yellow", WorkerState.LOADING: "yellow",
                WorkerState.CRASHED: "red", WorkerState.UNHEALTHY: "red", WorkerState.FAILED: "red",
                "fresh": "green", "stale": "red"}
"""Colours of worker states and of hive states (`fresh`, `stale`)."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add `rbee status`."""
    status = sub.add_parser("status", help="show nodes, hives, workers and models as the queen sees them")
    queen_options(status)
    status.add_argument("--json", action="store_true", help="print the queen's status document as JSON")
    status.set_defaults(func=run_status)


async def _fetch(queen: str, headers: dict[str, str]) -> dict[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        return await get_json(session, f"{queen}/v2/status", "the queen", headers)


def run_status(args: argparse.Namespace) -> int:
    """Print the status (errors end in `main`)."""
    queen, headers = queen_target(args)
    with reaching("queen", queen):
        status = asyncio.run(_fetch(queen, headers))
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        render(status, Console())
    return 0


def _state(value: Any) -> str:
    text = escape(str(value))
    style = STATE_STYLES.get(text)
    return f"[{style}]{text}[/{style}]" if style else text


def _text(value: Any) -> str:
    return escape(str(value))


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    """A table whose long text columns fold; the others (ids, states, numbers) never wrap."""
    table = Table(title=title, title_justify="left", title_style="bold", expand=False)
    for name in columns:
        table.add_column(name, overflow="fold", no_wrap=name not in FOLDED_COLUMNS)
    for row in rows:
        table.add_row(*row)
    if not rows:
        table.add_row("[dim]none[/dim]", *([""] * (len(columns) - 1)))
    return table


def _counts(states: dict[str, int]) -> str:
    return ", ".join(f"{count} {state}" for state, count in sorted(states.items()))


def _placed_on(worker: dict[str, Any]) -> str:
    """The worker's backend, with its GPU: `cpu`, `cuda:0`."""
    backend, device = worker.get("backend", "cpu"), worker.get("device")
    return _text(backend if device is None else f"{backend}:{device}")


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s ago"


def render(status: dict[str, Any], console: Console) -> None:
    """Print the status document as a summary line and four tables."""
    workers, models = status["workers"], status["models"]
    console.print(f"[bold]rbee[/bold]: {len(status['nodes'])} node(s), {len(workers)} worker(s), "
                  f"{status['tasks_running']} task(s) running, queue depth {status['queue_depth']}, "
                  f"{status['tokens_per_second']:.1f} tokens/s")
    console.print(_table("Nodes", ["Node", "Kind", "Hive", "Last heartbeat", "Hive URL"], [
        [_text(n["name"]), n["kind"], _state(n["hive"]), _ago(n["seconds_since_heartbeat"]),
         _text(n["hive_url"])]
        for n in status["nodes"]
    ]))
    console.print(_table("Hives", ["Hive URL", "Version", "State", "Last heartbeat"], [
        [_text(h["hive_url"]), _text(h["version"]), _state("stale" if h["stale"] else "fresh"),
         _ago(h["seconds_since_heartbeat"])]
        for h in status["hives"]
    ]))
    columns = ["Worker", "Node", "Model", "Backend", "State", "Busy", "tok/s", "Restarts"]
    console.print(_table("Workers", columns, [
        [_text(w["worker_id"]), _text(w["node"] or "?"), _text(w["model"]), _placed_on(w), _state(w["state"]),
         f"{w['slots_busy']}/{w['slots']}", f"{w['tokens_per_second']:.1f}", str(w["restarts"])]
        for w in workers
    ]))
    console.print(_table("Models", ["Model", "Workers", "States", "Slots busy", "Tokens/s"], [
        [_text(m["model"]), str(m["workers"]), _text(_counts(m["states"])),
         f"{m['slots_busy']}/{m['slots']}", f"{m['tokens_per_second']:.1f}"]
        for m in models
    ]))
