"""`POST /v2/models/pull` (a download onto a node, its progress relayed) and `GET /v2/models/show`
(what the hives know of a model, or of a model table alias's ref, and which workers run it)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from rbee.common import sse
from rbee.common.daemon import STOP_REQUESTED
from rbee.common.errors import ApiError, read_json_object
from rbee.common.validation import check_model_ref
from rbee.common.wire_requests import ModelPull
from rbee.queen.api.keys import HIVE_RELAY, MODELS, REGISTRY, STATUS
from rbee.queen.nodes.hive_directory import HiveDirectory, HiveHandle
from rbee.queen.nodes.hive_relay import copy


async def pull_model(request: web.Request) -> web.StreamResponse:
    """Start (or join) the download (of an alias: of its ref) on the node's hive and relay its
    progress stream."""
    body = ModelPull.parse(await read_json_object(request))
    spec = request.app[MODELS].get(body.model)
    download = body.download() if spec is None else body.download().model_copy(update={"model": spec.ref})
    job, upstream = await request.app[HIVE_RELAY].pull(body.node, download)
    async with upstream:
        response = await sse.open_stream(request, headers={"X-Rbee-Job": job["id"]})
        await copy(upstream, response, request.app[STOP_REQUESTED])
    return response


async def show_model(request: web.Request) -> web.Response:
    """The model's facts from the first node that holds it, every node holding it, its workers."""
    model = check_model_ref(request.query.get("model"))
    spec = request.app[MODELS].get(model)
    ref = spec.ref if spec is not None else model
    handles = await request.app[STATUS].directory.all()
    answers = await asyncio.gather(*(_shown(handle, ref) for handle in handles))
    held = [(handle.name, answer) for handle, answer in zip(handles, answers, strict=True) if answer]
    if not held:
        raise ApiError(404, "MODEL_NOT_FOUND", "no running node holds that model; `rbee pull` it first",
                       {"model": model})
    directory = request.app[STATUS].directory
    workers = [
        {"worker_id": w.worker_id, "node": _node_of(directory, w.hive_url), "state": w.state,
         "backend": w.backend, "device": w.device}
        for w in request.app[REGISTRY].all() if w.model in (model, ref)
    ]
    alias = {"alias": model} if spec is not None else {}
    return web.json_response({**held[0][1], **alias, "nodes": [name for name, _ in held], "workers": workers})


async def _shown(handle: HiveHandle, model: str) -> dict[str, Any] | None:
    """What the node's hive knows of `model` (None: it does not hold it, or does not answer)."""
    try:
        return await handle.client.show_model(model)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    except (aiohttp.ClientError, TimeoutError):
        return None


def _node_of(directory: HiveDirectory, hive_url: str) -> str:
    handle = directory.by_url(hive_url)
    return handle.name if handle is not None else hive_url
