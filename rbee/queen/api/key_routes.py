"""HTTP handlers of the key table: `/v2/keys` (admin scope)."""

from __future__ import annotations

from aiohttp import web

from rbee.common.errors import ApiError, read_json_object
from rbee.queen.api.keys import AUDIT, KEY_USAGE, KEYS
from rbee.queen.keys.requests import KeyCreate
from rbee.queen.keys.store import check_name


async def create_key(request: web.Request) -> web.Response:
    """POST /v2/keys: create a named key (201); the answer holds the key, the only time it is shown."""
    body = KeyCreate.parse(await read_json_object(request))
    key, secret = request.app[KEYS].create(
        body.name, frozenset(body.scopes), None if body.models is None else frozenset(body.models),
        body.limits(), body.weight, None if body.expires_at is None else body.expires_at.timestamp())
    request.app[AUDIT]("key.created", name=key.name, key_fingerprint=key.fingerprint,
                       scopes=sorted(key.scopes))
    return web.json_response({**key.to_wire(), "key": secret}, status=201,
                             headers={"Cache-Control": "no-store"})


async def list_keys(request: web.Request) -> web.Response:
    """GET /v2/keys: every key's record (never a key)."""
    return web.json_response({"keys": [key.to_wire() for key in request.app[KEYS].all()]})


async def revoke_key(request: web.Request) -> web.Response:
    """DELETE /v2/keys/{name}: revoke a key; it is refused from the next request on."""
    key = request.app[KEYS].revoke(check_name(request.match_info["name"]))
    request.app[AUDIT]("key.revoked", name=key.name, key_fingerprint=key.fingerprint)
    return web.json_response(key.to_wire())


async def key_usage(request: web.Request) -> web.Response:
    """GET /v2/keys/usage: requests and tokens per key name (`?name=` for one)."""
    report = request.app[KEY_USAGE].report()
    name = request.query.get("name")
    if name is not None:
        if request.app[KEYS].get(check_name(name)) is None:
            raise ApiError(404, "KEY_NOT_FOUND", f"no key is named '{name}'", {"name": name})
        report = {name: report.get(name, {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                          "last_used": None})}
    return web.json_response({"usage": report})
