"""`/v1/models/list` and `/v1/models/remove`: the models in this hive's catalog."""

from __future__ import annotations

from aiohttp import web

from rbee.common.errors import ApiError, read_json_object
from rbee.common.wire_requests import ModelRemove
from rbee.hive.app_keys import CATALOG, SUPERVISOR


async def list_models(request: web.Request) -> web.Response:
    """Models in this hive's catalog, and those it can install on first use without a download."""
    catalog = request.app[CATALOG]
    models = [entry.to_wire() for entry in await catalog.list()]
    return web.json_response({"models": models, "installable": catalog.installable()})


async def remove_model(request: web.Request) -> web.Response:
    """Forget a model (and delete its file when the hive downloaded or assembled it)."""
    name = ModelRemove.parse(await read_json_object(request)).name
    users = [w.worker_id for w in request.app[SUPERVISOR].list() if w.model.name == name]
    if users:
        raise ApiError(409, "MODEL_IN_USE", "workers are running this model; stop them first",
                       {"workers": users})
    entry, deleted = await request.app[CATALOG].remove(name)
    return web.json_response({"removed": entry.name, "path": entry.path, "file_deleted": deleted})
