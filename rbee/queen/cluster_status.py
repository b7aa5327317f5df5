"""The cluster as the queen sees it now: nodes, hives, workers, models, throughput and queue
(what `GET /v2/status`, `rbee status` and the `/ui` page show), and whether the queen can do its
job (the checks of `GET /ready`).

Both only read what the queen already knows (its registries, heartbeats and its own task
counts): asking never starts a hive or a worker.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from rbee.common.readiness import Check
from rbee.queen.nodes.hive_directory import HiveDirectory
from rbee.queen.nodes.local_hive import LOCAL_NODE
from rbee.queen.nodes.node_registry import Node, NodeRegistry
from rbee.queen.routing.dispatch import Dispatcher
from rbee.queen.routing.hive_registry import HiveRegistry, HiveView
from rbee.queen.routing.task_meter import TaskMeter
from rbee.queen.routing.worker_registry import WorkerRegistry, WorkerView


@dataclass(frozen=True)
class StatusSources:
    """What the status is read from."""

    registry: WorkerRegistry
    hives: HiveRegistry
    directory: HiveDirectory
    nodes: NodeRegistry
    dispatcher: Dispatcher
    meter: TaskMeter



def _hive_state(view: HiveView | None, now: float) -> dict[str, Any]:
    if view is None:
        return {"hive": "no heartbeat yet", "seconds_since_heartbeat": None}
    return {"hive": "stale" if view.stale else "fresh",
            "seconds_since_heartbeat": round(now - view.last_seen, 1)}


async def snapshot(sources: StatusSources) -> dict[str, Any]:
    """The whole status document."""
    registered = await asyncio.to_thread(sources.nodes.all)
    now = time.monotonic()
    heard = {view.hive_url: view for view in sources.hives.all()}
    places = places_of(sources, registered)
    node_of = {url: name for name, url, _ in places}
    nodes = [{"name": name, "hive_url": url, "kind": kind, **_hive_state(heard.get(url), now)}
             for name, url, kind in places]
    workers = [_worker(sources, worker, node_of.get(worker.hive_url)) for worker in sources.registry.all()]
    return {
        "nodes": nodes,
        "hives": [view.to_wire(now) for view in heard.values()],
        "workers": workers,
        "models": _models(workers),
        "tasks_running": sources.dispatcher.running_count,
        "queue_depth": sources.meter.queued,
        "tokens_per_second": round(sources.meter.throughput.rate(), 2),
    }


def _worker(sources: StatusSources, worker: WorkerView, node: str | None) -> dict[str, Any]:
    in_flight = sources.registry.in_flight(worker.worker_id)
    return {
        **worker.to_wire(in_flight),
        "node": node,
        "slots_busy": in_flight,
        "tokens_per_second": round(sources.meter.tokens_per_second(worker.worker_id), 2),
        "stale": sources.hives.is_stale(worker.hive_url),
    }


def _models(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: its workers, their slots and throughput."""
    rows: dict[str, dict[str, Any]] = {}
    states: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for worker in workers:
        row = rows.setdefault(worker["model"], {"model": worker["model"], "workers": 0, "slots": 0,
                                                "slots_busy": 0, "tokens_per_second": 0.0})
        row["workers"] += 1
        row["slots"] += worker["slots"]
        row["slots_busy"] += worker["slots_busy"]
        row["tokens_per_second"] = round(row["tokens_per_second"] + worker["tokens_per_second"], 2)
        states[worker["model"]][worker["state"]] += 1
    return [{**row, "states": dict(states[name])} for name, row in sorted(rows.items())]


def places_of(sources: StatusSources, registered: list[Node]) -> list[tuple[str, str, str]]:
    """(node name, hive URL, how the queen starts it) for every node the queen can route to."""
    local = sources.directory.local
    places = [(LOCAL_NODE, local.client.base_url, "local")] if local is not None else []
    return places + [(node.spec.name, node.spec.hive_url, "ssh") for node in registered]


async def readiness(sources: StatusSources) -> dict[str, Check]:
    """The checks of `GET /ready`: the node registry loads, a hive answers heartbeats or one can
    be started, and the queen is not draining."""
    try:
        registered = await asyncio.to_thread(sources.nodes.all)
        registry = Check(True, f"{len(registered)} node(s) registered")
    except sqlite3.Error as exc:
        registered, registry = [], Check(False, f"the node registry cannot be read: {exc}")
    fresh = [view for view in sources.hives.all() if not view.stale]
    startable = [name for name, url, _ in places_of(sources, registered) if not sources.hives.is_stale(url)]
    if fresh:
        hives = Check(True, f"{len(fresh)} hive(s) send heartbeats")
    elif startable:
        hives = Check(True, f"a hive can be started on {', '.join(startable)}")
    else:
        hives = Check(False, "no hive sends heartbeats and none can be started (no local hive, every "
                      "registered node stale)")
    draining = sources.dispatcher.draining
    return {
        "node_registry": registry,
        "hive_available": hives,
        "accepting": Check(not draining, "draining" if draining else "admitting tasks", "DRAINING"),
    }
