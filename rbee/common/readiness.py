"""Readiness answers: `/health` says the process is alive, `/ready` that it can do its job now.

A daemon's readiness is a set of named checks, each passing or not with a one-line detail.
All pass: 200 `{"ready": true, "checks": {...}}`. One fails: 503 with the same fields and the
usual error object (code `NOT_READY`, or the failing check's own code such as `DRAINING`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rbee.common.errors import CORRELATION_HEADER, ApiError, correlation_id_of


@dataclass(frozen=True)
class Check:
    """One readiness condition as it stands now."""

    ok: bool
    detail: str
    code: str = "NOT_READY"
    """The error code to answer with when this is the first failing check."""


def ready_response(request: web.Request, checks: dict[str, Check], extra: dict[str, Any] | None = None
                   ) -> web.Response:
    """200 when every check passes, else 503 naming the failing ones; `extra` joins the body."""
    failing = [name for name, check in checks.items() if not check.ok]
    body: dict[str, Any] = {
        "ready": not failing,
        "checks": {name: {"ok": check.ok, "detail": check.detail} for name, check in checks.items()},
        **(extra or {}),
    }
    if not failing:
        return web.json_response(body)
    cid = correlation_id_of(request)
    err = ApiError(503, checks[failing[0]].code, f"not ready: {', '.join(failing)}",
                   {"failing": failing}, headers={"Retry-After": "1"})
    return web.json_response({**body, **err.body(cid)}, status=503,
                             headers={CORRELATION_HEADER: cid, **err.headers})
