"""Relaying an event stream as the queen does: events read with `iter_events` are written on
unchanged, byte for byte, without being encoded again; real aiohttp servers on loopback."""

import asyncio

import aiohttp
import pytest
from aiohttp import web

from rbee.common import sse

UPSTREAM_URL = web.AppKey("upstream_url", str)
UPSTREAM = (
    b": queue position 1\n\n"
    b'data: {"type": "started",   "task_id": "t1"}\n\n'
    b'data: {"token": "Once", "type": "token", "index": 0}\n\n'
    b'data: {"type":"end","tokens_out":1}\n\n'
)


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def _relay_once(body: bytes) -> bytes:
    """Serve `body` as an upstream stream, relay it through a second server, return what a
    client of the relay reads."""

    async def upstream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        return response

    async def relay(request: web.Request) -> web.StreamResponse:
        response = await sse.open_stream(request)
        async with aiohttp.ClientSession() as session, session.get(request.app[UPSTREAM_URL]) as source:
            async for event in sse.iter_events(source):
                if event["type"] == "started":
                    event = {**event, "node": "n1"}
                await sse.send_data(response, event)
        await sse.send_data(response, sse.DONE)
        return response

    up_app = web.Application()
    up_app.router.add_get("/", upstream)
    up_runner, up_url = await _serve(up_app)
    relay_app = web.Application()
    relay_app[UPSTREAM_URL] = up_url + "/"
    relay_app.router.add_get("/", relay)
    relay_runner, relay_url = await _serve(relay_app)
    try:
        async with aiohttp.ClientSession() as session, session.get(relay_url + "/") as response:
            return await response.read()
    finally:
        await relay_runner.cleanup()
        await up_runner.cleanup()


def test_relayed_events_keep_their_bytes_and_changed_ones_are_encoded_afresh():
    received = asyncio.run(_relay_once(UPSTREAM + b"data: [DONE]\n\n"))
    assert received.split(b"\n\n")[:-1] == [
        b'data: {"type":"started","task_id":"t1","node":"n1"}',
        b'data: {"token": "Once", "type": "token", "index": 0}',
        b'data: {"type":"end","tokens_out":1}',
        b"data: [DONE]",
    ]


def test_a_stream_that_stops_before_done_is_reported_truncated():
    async def read(body: bytes) -> list[dict]:
        async def upstream(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(body)
            return response

        app = web.Application()
        app.router.add_get("/", upstream)
        runner, url = await _serve(app)
        try:
            async with aiohttp.ClientSession() as session, session.get(url + "/") as response:
                return [event async for event in sse.iter_events(response)]
        finally:
            await runner.cleanup()

    with pytest.raises(sse.StreamTruncated):
        asyncio.run(read(UPSTREAM))
