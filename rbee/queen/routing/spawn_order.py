"""Which node is asked first to spawn a worker, and which refusal a client sees when all refuse.

For `auto` and `cuda`, with several nodes to choose from, nodes are ordered by the free memory
of their best GPU (from each hive's `/v1/resources`: `available_bytes`, what rbee may still book,
when the hive reports it, else `free_bytes`); nodes whose resources cannot be read come next, and
nodes without GPUs last (`auto`) or not at all (`cuda`). Of nodes with equal GPU memory (those
without GPUs, say), the ones running no worker of the model come first, so a replica lands on
another node when it can; the hive picks the GPU.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from typing import Any

import aiohttp

from rbee.common.errors import ApiError
from rbee.queen.nodes.hive_directory import HiveHandle
from rbee.queen.routing.backend_policy import AUTO

log = logging.getLogger(__name__)
RESOURCES_READ_S = 2.0
"""How long reading one hive's resources may take before its node counts as unknown."""
GPU_POLICIES = (AUTO, "cuda")
_HAS_GPU, _UNKNOWN, _NO_GPU = 0, 1, 2


def best_gpu_free_bytes(resources: Mapping[str, Any]) -> int | None:
    """The most memory free on one of the node's GPUs; None when it reports none."""
    gpus = resources.get("gpus") or []
    free = [int(gpu.get("available_bytes", gpu.get("free_bytes", 0))) for gpu in gpus]
    return max(free, default=None)


async def _reading(handle: HiveHandle) -> tuple[int, int]:
    """(group, free bytes of the best GPU) of one node."""
    try:
        resources = await asyncio.wait_for(handle.client.resources(), RESOURCES_READ_S)
        free = best_gpu_free_bytes(resources)
    except (ApiError, aiohttp.ClientError, TimeoutError, ValueError, TypeError) as exc:
        log.info("resources of node %s unknown (%s); it is asked after the nodes with GPUs", handle.name, exc)
        return _UNKNOWN, 0
    return (_NO_GPU, 0) if free is None else (_HAS_GPU, free)


async def spawn_order(
    handles: list[HiveHandle], policy: str, busy_urls: Collection[str] = ()
) -> list[HiveHandle]:
    """`handles` in the order to ask them; 400 BACKEND_UNAVAILABLE when `cuda` leaves none.

    `busy_urls`: hives that already run a worker of the model (asked after the others of their group).
    """
    if policy in GPU_POLICIES and len(handles) > 1:
        readings = await asyncio.gather(*(_reading(h) for h in handles))
    else:
        readings = [(_UNKNOWN, 0)] * len(handles)
    ranked = sorted(zip(handles, readings, strict=True),
                    key=lambda item: (item[1][0], -item[1][1], item[0].client.base_url in busy_urls))
    if policy == "cuda":
        with_gpu = [handle for handle, (group, _) in ranked if group != _NO_GPU]
        if handles and not with_gpu:
            raise ApiError(400, "BACKEND_UNAVAILABLE",
                           "the cuda backend cannot be used: no node reports a GPU",
                           {"backend": "cuda", "nodes": [h.name for h in handles]})
        return with_gpu
    return [handle for handle, _ in ranked]


def is_refusal(exc: ApiError) -> bool:
    """True when a hive turned a spawn down for want of the backend or of memory (another node may
    take it)."""
    return exc.status == 507 or exc.code == "BACKEND_UNAVAILABLE"


def _specificity(exc: ApiError) -> int:
    if exc.code == "INSUFFICIENT_VRAM":
        return 3
    if exc.status == 507:
        return 2
    return 1 if exc.code == "BACKEND_UNAVAILABLE" else 0


def most_specific(kept: ApiError | None, new: ApiError) -> ApiError:
    """The failure a client gets when every node failed: too little GPU memory over too little
    other memory over a missing backend over a hive that could not start; the first of equals."""
    return new if kept is None or _specificity(new) > _specificity(kept) else kept
