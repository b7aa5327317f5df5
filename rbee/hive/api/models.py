"""`/v1/models/list`, `/v1/models/show` and `/v1/models/remove`: the models in this hive's catalog."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from rbee.common.errors import ApiError, read_json_object
from rbee.common.validation import check_model_ref
from rbee.common.wire_requests import ModelRemove
from rbee.hive.app_keys import CATALOG, SUPERVISOR
from rbee.hive.gguf_header import GgufError
from rbee.hive.model_facts import model_facts


async def list_models(request: web.Request) -> web.Response:
    """Models in this hive's catalog, and those it can install on first use without a download."""
    catalog = request.app[CATALOG]
    models = [entry.to_wire() for entry in await catalog.list()]
    return web.json_response({"models": models, "installable": catalog.installable()})


async def show_model(request: web.Request) -> web.Response:
    """One catalog model (found by name or ref) with its GGUF header's facts; 404 when absent."""
    name = check_model_ref(request.query.get("name"), "name")
    entries = await request.app[CATALOG].list()
    entry = next((e for e in entries if name in (e.name, e.ref) and Path(e.path).is_file()), None)
    if entry is None:
        raise ApiError(404, "MODEL_NOT_FOUND", "no model of that name is in the catalog", {"name": name})
    try:
        facts = await asyncio.to_thread(model_facts, Path(entry.path))
    except (OSError, GgufError) as exc:
        raise ApiError(422, "MODEL_UNREADABLE", f"the model file cannot be read: {exc}",
                       {"name": name}) from None
    return web.json_response({**entry.to_wire(), **facts})


async def remove_model(request: web.Request) -> web.Response:
    """Forget a model (and delete its file when the hive downloaded or assembled it)."""
    name = ModelRemove.parse(await read_json_object(request)).name
    users = [w.worker_id for w in request.app[SUPERVISOR].list() if w.model.name == name]
    if users:
        raise ApiError(409, "MODEL_IN_USE", "workers are running this model; stop them first",
                       {"workers": users})
    entry, deleted = await request.app[CATALOG].remove(name)
    return web.json_response({"removed": entry.name, "path": entry.path, "file_deleted": deleted})
