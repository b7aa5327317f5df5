"""Structured API errors and the aiohttp middleware that renders every failure as JSON."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rbee.common import json_depth
from rbee.common.tunables import http_limits

log = logging.getLogger(__name__)

CORRELATION_HEADER = "X-Correlation-ID"
CORRELATION_ID = web.RequestKey("correlation_id", str)
_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "BODY_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}
_OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
"""OpenAI's error `type` of the statuses that have their own; other 4xx are
`invalid_request_error`, 5xx `server_error`."""


class ApiError(Exception):
    """An error with an HTTP status, an UPPER_SNAKE code and a human message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def body(self, correlation_id: str) -> dict[str, Any]:
        """The wire form of this error."""
        return error_body(self.status, self.code, self.message, correlation_id, self.details)


def openai_type(status: int) -> str:
    """The `type` OpenAI's error shape gives an HTTP status."""
    if status >= 500:
        return "server_error"
    return _OPENAI_TYPES.get(status, "invalid_request_error")


def error_body(
    status: int, code: str, message: str, correlation_id: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Build DESIGN.md's error object, which is OpenAI's as well: `type` from the status and
    `param` the refused field (`details.field`) or null; `code` is rbee's UPPER_SNAKE code."""
    details = details or {}
    field = details.get("field")
    return {
        "error": {
            "code": code,
            "message": message,
            "type": openai_type(status),
            "param": field if isinstance(field, str) else None,
            "details": details,
            "correlation_id": correlation_id,
        }
    }


def correlation_id_of(request: web.Request) -> str:
    """The request's correlation id (set by the middleware)."""
    return request.get(CORRELATION_ID) or str(uuid.uuid4())


def _incoming_correlation_id(request: web.Request) -> str:
    given = request.headers.get(CORRELATION_HEADER, "").strip().lower()
    return given if _UUID4.match(given) else str(uuid.uuid4())


def error_response(err: ApiError, correlation_id: str) -> web.Response:
    """Render an ApiError as a JSON response."""
    headers = {CORRELATION_HEADER: correlation_id, **err.headers}
    return web.json_response(err.body(correlation_id), status=err.status, headers=headers)


CLIENT_CLOSED = 499
"""Status of a request whose client went away before the answer ended (nginx's 499)."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Assign a correlation id, echo it, and turn every failure into a structured error."""
    cid = _incoming_correlation_id(request)
    request[CORRELATION_ID] = cid
    try:
        response = await handler(request)
    except ApiError as err:
        return error_response(err, cid)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, "HTTP_ERROR")
        return error_response(ApiError(exc.status, code, exc.reason), cid)
    except Exception as exc:
        if isinstance(exc, ConnectionResetError) and client_gone(request):
            log.debug("the client went away during the answer (correlation_id=%s)", cid)
            return web.Response(status=CLIENT_CLOSED)
        log.exception("unhandled error (correlation_id=%s)", cid)
        return error_response(
            ApiError(500, "INTERNAL", "internal error; quote the correlation id when reporting"),
            cid,
        )
    if not response.prepared:
        response.headers[CORRELATION_HEADER] = cid
    return response


def client_gone(request: web.Request) -> bool:
    """True when the client's connection is closed or closing (a write to it just failed)."""
    return request.transport is None or request.transport.is_closing()


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """Parse the request body as a JSON object or raise a 400 ApiError."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, "BODY_TOO_LARGE", "request body is too large") from exc
    limit = http_limits().json_max_depth
    try:
        data = json_depth.loads(raw or b"null", limit)
    except json_depth.JsonTooDeep as exc:
        message = f"request body nests arrays and objects deeper than {limit} levels"
        raise ApiError(400, "JSON_TOO_DEEP", message, {"field": "body", "max_depth": limit}) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "INVALID_JSON", "request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "INVALID_JSON", "request body must be a JSON object")
    return data
