"""The queen's authentication: the bootstrap token or a named key, its scope for the route, its
limits.

The queen's token file is the bootstrap key (every scope, no limits). Any other key is looked up
by its SHA-256 in the key store: unknown 401 `INVALID_API_KEY`, revoked 401 `API_KEY_REVOKED`,
expired 401 `API_KEY_EXPIRED`, outside its scope 403 `FORBIDDEN_SCOPE`. The key's name is bound
to the request (`KEY`, `CLIENT` = `key:<name>`) and to every log line and audit record made while
serving it (`key_name`), never the key.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from rbee.common import log_context
from rbee.common.audit import Audit
from rbee.common.auth import CLIENT, WWW_AUTHENTICATE, Keyring, note_refusal, presented_credential
from rbee.common.errors import ApiError, Handler
from rbee.queen.keys.limits import KeyLimiter
from rbee.queen.keys.scopes import scopes_for
from rbee.queen.keys.store import BOOTSTRAP_KEY, ApiKey, KeyStore
from rbee.queen.keys.usage import KEY_FIELD, KeyUsage
from rbee.queen.routing.tenant import TENANT, Tenant

KEY = web.RequestKey("api_key", ApiKey)
"""The record of the key that authenticated the request."""
DEV_KEY = ApiKey("dev", fingerprint="", scopes=BOOTSTRAP_KEY.scopes)
"""Every request of a queen in dev mode (no token, loopback only)."""


def _refused(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers=WWW_AUTHENTICATE)


def identify(keyring: Keyring, store: KeyStore, presented: str) -> ApiKey:
    """The key `presented` is: the bootstrap key, a live named key, or a 401."""
    if keyring.matches(presented):
        own = keyring.own
        return ApiKey(BOOTSTRAP_KEY.name, own.fingerprint if own else "", BOOTSTRAP_KEY.scopes)
    key = store.find(presented)
    if key is None:
        raise _refused("INVALID_API_KEY", "the bearer token is not valid here")
    if key.revoked_at is not None:
        raise _refused("API_KEY_REVOKED", f"key '{key.name}' was revoked")
    if key.expires_at is not None and key.expires_at <= time.time():
        raise _refused("API_KEY_EXPIRED", f"key '{key.name}' has expired")
    return key


def key_auth_middleware(keyring: Keyring, store: KeyStore, public_paths: frozenset[str],
                        audit: Audit) -> Any:
    """Middleware that lets public paths through and admits a key only on its scopes' routes."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if keyring.own is None:
            return await _serve_as(request, handler, DEV_KEY)
        if request.path in public_paths:
            request[CLIENT] = "public"
            return await handler(request)
        try:
            key = identify(keyring, store, presented_credential(request))
            log_context.bind(**{KEY_FIELD: key.name})
            needed = scopes_for(request)
            if not key.scopes & needed:
                raise ApiError(403, "FORBIDDEN_SCOPE",
                               f"key '{key.name}' (scope {', '.join(sorted(key.scopes))}) may not call "
                               f"{request.method} {request.path}, which needs scope "
                               f"{' or '.join(sorted(needed))}",
                               {"key": key.name, "needs": sorted(needed)})
        except ApiError as err:
            note_refusal(request, err, audit)
            raise
        audit("auth.success", method=request.method, path=request.path, remote=request.remote,
              **{KEY_FIELD: key.name}, key_fingerprint=key.fingerprint)
        return await _serve_as(request, handler, key)

    return authenticate


async def _serve_as(request: web.Request, handler: Handler, key: ApiKey) -> web.StreamResponse:
    request[KEY] = key
    request[CLIENT] = f"key:{key.name}"
    request[TENANT] = Tenant(key.name, key.weight)
    log_context.bind(**{KEY_FIELD: key.name})
    return await handler(request)


def key_limits(limiter: KeyLimiter, usage: KeyUsage, exempt: frozenset[str], audit: Audit) -> Any:
    """Middleware (after authentication) applying the key's own limits and counting its requests."""

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.get(KEY)
        if key is None or request.path in exempt:
            return await handler(request)
        try:
            limiter.admit(key)
        except ApiError as err:
            audit("rate.limited", remote=request.remote, path=request.path, reason=err.details["limit"])
            raise
        usage.request(key.name)
        try:
            return await handler(request)
        finally:
            limiter.finished(key)

    return limit


def require_model(request: web.Request, model: str) -> None:
    """403 `MODEL_NOT_ALLOWED` when the request's key may not use `model`."""
    key = request.get(KEY)
    if key is not None and not key.allows_model(model):
        raise ApiError(403, "MODEL_NOT_ALLOWED", f"key '{key.name}' may not use model '{model}'",
                       {"key": key.name, "model": model})
