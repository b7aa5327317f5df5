"""Every failure of a handler becomes DESIGN.md's structured JSON error."""

import asyncio
import uuid

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

from rbee.common.daemon import MAX_BODY_BYTES, new_app
from rbee.common.errors import ApiError, error_middleware, read_json_object


async def _refuse(request):
    raise ApiError(409, "CONFLICT_HERE", "already there", {"thing": "x"})


async def _crash(request):
    raise RuntimeError("secret internals")


async def _echo(request):
    return web.json_response(await read_json_object(request))


def _call(method, path, **kwargs):
    async def run():
        app = new_app()
        app.router.add_get("/refuse", _refuse)
        app.router.add_get("/crash", _crash)
        app.router.add_post("/echo", _echo)
        async with TestServer(app) as server, aiohttp.ClientSession() as session:
            async with session.request(method, server.make_url(path), **kwargs) as response:
                return response.status, dict(response.headers), await response.json()

    return asyncio.run(run())


def test_an_api_error_keeps_its_status_code_and_details():
    status, headers, body = _call("GET", "/refuse")
    assert status == 409
    assert body["error"]["code"] == "CONFLICT_HERE"
    assert body["error"]["details"] == {"thing": "x"}
    assert headers["X-Correlation-ID"] == body["error"]["correlation_id"]


def test_an_unhandled_exception_is_a_500_without_a_traceback():
    status, _, body = _call("GET", "/crash")
    assert status == 500
    assert body["error"]["code"] == "INTERNAL"
    assert "secret" not in str(body) and "Traceback" not in str(body)


def test_a_given_uuid4_correlation_id_is_echoed_and_a_bad_one_replaced():
    given = str(uuid.uuid4())
    _, headers, body = _call("GET", "/refuse", headers={"X-Correlation-ID": given})
    assert body["error"]["correlation_id"] == given == headers["X-Correlation-ID"]
    _, _, body = _call("GET", "/refuse", headers={"X-Correlation-ID": "not-a-uuid"})
    assert uuid.UUID(body["error"]["correlation_id"]).version == 4


def test_unknown_routes_and_methods_are_structured():
    assert _call("GET", "/nowhere")[2]["error"]["code"] == "NOT_FOUND"
    assert _call("DELETE", "/refuse")[2]["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_bodies_that_are_not_json_objects_are_refused():
    assert _call("POST", "/echo", data=b"{nope")[2]["error"]["code"] == "INVALID_JSON"
    assert _call("POST", "/echo", json=[1, 2])[2]["error"]["code"] == "INVALID_JSON"


def test_a_body_over_the_size_cap_is_413():
    status, _, body = _call("POST", "/echo", data=b"x" * (MAX_BODY_BYTES + 1))
    assert status == 413
    assert body["error"]["code"] == "BODY_TOO_LARGE"



class _Transport:
    def __init__(self, closing: bool) -> None:
        self._closing = closing

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name, default=None):
        return default


def _write_fails(closing: bool):
    request = make_mocked_request("GET", "/stream", transport=_Transport(closing))

    async def handler(_request):
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    return asyncio.run(error_middleware(request, handler))


def test_a_write_to_a_client_that_hung_up_is_a_499_without_a_traceback(caplog):
    with caplog.at_level("DEBUG"):
        response = _write_fails(closing=True)
    assert response.status == 499
    assert "unhandled error" not in caplog.text and "the client went away" in caplog.text, caplog.text


def test_a_connection_reset_while_the_client_is_still_there_is_an_internal_error(caplog):
    response = _write_fails(closing=False)
    assert response.status == 500
    assert "unhandled error" in caplog.text, caplog.text
