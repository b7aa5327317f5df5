"""The queen's read-only status page: `GET /ui` (the page) and `GET /ui/status` (its data).

The page arrives with the status already in it (so it shows the cluster at once) and then
refreshes itself from `/ui/status` every two seconds. Both routes take the queen's token like
the rest of the API; being under `/ui` they also accept it as the password of HTTP Basic auth,
so a plain browser can log in (see `rbee.common.auth`).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from aiohttp import web

from rbee.queen.api.keys import STATUS
from rbee.queen.cluster_status import snapshot

PAGE = Path(__file__).with_name("ui") / "index.html"
PLACEHOLDER = "__RBEE_STATUS__"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@cache
def _template() -> str:
    return PAGE.read_text(encoding="utf-8")


def render(status: dict[str, object]) -> str:
    """The page with `status` embedded as JSON that cannot close its script element."""
    data = json.dumps(status).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return _template().replace(PLACEHOLDER, data)


async def page(request: web.Request) -> web.Response:
    """GET /ui: the status page."""
    html = render(await snapshot(request.app[STATUS]))
    return web.Response(text=html, content_type="text/html", headers=SECURITY_HEADERS)


async def page_status(request: web.Request) -> web.Response:
    """GET /ui/status: what the page refreshes itself from (the same document as /v2/status)."""
    return web.json_response(await snapshot(request.app[STATUS]), headers={"Cache-Control": "no-store"})
