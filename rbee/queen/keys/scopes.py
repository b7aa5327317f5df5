"""Which scope each queen route needs. A route not listed here needs `admin`."""

from __future__ import annotations

from aiohttp import web

INFERENCE_ROUTES = frozenset({
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v2/tasks"),
    ("DELETE", "/v2/tasks/{task_id}"),
    ("GET", "/openapi.json"),
})
NODE_ROUTES = frozenset({("POST", "/v2/heartbeat")})
ADMIN = "admin"


def route_of(request: web.Request) -> tuple[str, str] | None:
    """The method and path template of the route `request` matched (None: no route matched)."""
    route = request.match_info.route
    resource = route.resource
    if resource is None or request.match_info.http_exception is not None:
        return None
    return request.method, resource.canonical


def scopes_for(request: web.Request) -> frozenset[str]:
    """The scopes any one of which lets a key call this route (every scope for an unknown path,
    which then answers 404 or 405 to a valid key)."""
    route = route_of(request)
    if route is None:
        return frozenset({"inference", "admin", "node"})
    method, path = route
    if method == "HEAD":
        method = "GET"
    if (method, path) in INFERENCE_ROUTES:
        return frozenset({"inference", ADMIN}) if path == "/openapi.json" else frozenset({"inference"})
    if (method, path) in NODE_ROUTES:
        return frozenset({"node"})
    return frozenset({ADMIN})
