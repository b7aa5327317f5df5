"""Prometheus HTTP service discovery: the queen, every hive and every worker as scrape targets.

The answer is Prometheus' `http_sd` format, a JSON list of target groups, one per daemon:
`{"targets": ["host:port"], "labels": {...}}`. Labels: `role` (queen, hive or worker), `node`
(the node name the queen routes by), and for a worker `model` and `worker` (its id); `__scheme__`
tells Prometheus whether to scrape over HTTP or HTTPS.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from rbee.queen.routing.worker_registry import WorkerView

TargetGroup = dict[str, Any]


def _address(url: str) -> tuple[str, str]:
    """(`host:port`, scheme) of a daemon's base URL."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    return f"{host}:{port}", parts.scheme or "http"


def _group(url: str, labels: dict[str, str]) -> TargetGroup:
    target, scheme = _address(url)
    return {"targets": [target], "labels": {**labels, "__scheme__": scheme}}


def target_groups(queen_url: str, node_of: dict[str, str], hive_urls: Iterable[str],
                  workers: Iterable[WorkerView]) -> list[TargetGroup]:
    """The queen (at `queen_url`), each hive (`hive_urls`, named by `node_of` hive URL → node, else
    by its host) and each worker, as `http_sd` target groups."""
    def node(hive_url: str) -> str:
        return node_of.get(hive_url) or urlsplit(hive_url).hostname or hive_url

    groups = [_group(queen_url, {"role": "queen"})]
    groups += [_group(url, {"role": "hive", "node": node(url)}) for url in dict.fromkeys(hive_urls)]
    groups += [_group(worker.url, {"role": "worker", "node": node(worker.hive_url), "model": worker.model,
                                   "worker": worker.worker_id})
               for worker in sorted(workers, key=lambda view: view.worker_id)]
    return groups
