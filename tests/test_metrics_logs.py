"""Log lines carry the ids bound where they are logged (text and JSON), long-lived tasks start
without the request's ids, and the queen's client passes the correlation id on to the daemons
it calls (a real loopback server sees the header)."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from rbee.common import log_context
from rbee.common.errors import CORRELATION_HEADER
from rbee.common.log_context import ContextFilter, formatter, forward_correlation

CID = "3f2b8c1e-9d4a-4b7e-8f6a-2c1d0e9b8a7f"


def _logger(log_format: str, worker_id: str | None = None) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter(log_format, "worker" if worker_id else "queen", worker_id))
    handler.addFilter(ContextFilter({"worker_id": worker_id} if worker_id else {}))
    logger = logging.getLogger(f"test.{log_format}.{worker_id}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def _in_fresh_context(action) -> None:
    """Run `action` in a copy of the context, so what it binds does not leak into other tests."""
    contextvars.copy_context().run(action)


def test_json_lines_name_the_component_and_the_bound_ids():
    logger, out = _logger("json", worker_id="w-0123456789")

    def log() -> None:
        logger.info("before binding")
        log_context.bind(correlation_id=CID, task_id="t-1")
        logger.info("task %s admitted", "t-1")

    _in_fresh_context(log)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["component"] == "worker" and first["worker_id"] == "w-0123456789"
    assert "correlation_id" not in first and first["message"] == "before binding"
    assert {"time", "level", "logger"} <= set(second)
    assert (second["correlation_id"], second["task_id"]) == (CID, "t-1")
    assert second["message"] == "task t-1 admitted"


def test_text_lines_append_the_bound_ids_before_a_traceback():
    logger, out = _logger("text")

    def log() -> None:
        log_context.bind(correlation_id=CID)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")

    _in_fresh_context(log)
    first_line, *rest = out.getvalue().splitlines()
    assert first_line.endswith(f" queen ERROR test.text.None: failed [correlation_id={CID}]"), first_line
    assert rest and rest[0].startswith("Traceback"), rest


def test_a_task_started_with_only_its_worker_id_does_not_carry_the_request_ids():
    seen: dict[str, str | None] = {}

    async def owner() -> None:
        seen["correlation_id"] = log_context.bound("correlation_id")
        seen["worker_id"] = log_context.bound("worker_id")

    async def handler() -> None:
        log_context.bind(correlation_id=CID)
        await asyncio.create_task(owner(), context=log_context.only(worker_id="w-1"))
        seen["handler"] = log_context.bound("correlation_id")

    asyncio.run(handler())
    assert seen == {"correlation_id": None, "worker_id": "w-1", "handler": CID}


def test_the_queen_client_forwards_the_bound_correlation_id_and_keeps_a_given_one():
    received: list[str | None] = []

    async def echo(request: web.Request) -> web.Response:
        received.append(request.headers.get(CORRELATION_HEADER))
        return web.Response(text="ok")

    async def run() -> None:
        app = web.Application()
        app.router.add_get("/", echo)
        session = aiohttp.ClientSession(trace_configs=[forward_correlation()])
        async with TestServer(app) as server, session as s:
            async with s.get(server.make_url("/")):
                pass
            log_context.bind(correlation_id=CID)
            async with s.get(server.make_url("/")):
                pass
            async with s.get(server.make_url("/"), headers={CORRELATION_HEADER: "given"}):
                pass

    asyncio.run(run())
    assert received == [None, CID, "given"]
