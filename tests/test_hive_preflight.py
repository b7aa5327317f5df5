"""The queen's preflight of a node's hive, against an HTTP server answering as an older or a current hive."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from rbee import __version__
from rbee.common.errors import ApiError
from rbee.queen.nodes.hive_client import HiveClient
from rbee.queen.nodes.hive_preflight import check_hive


def _hive_answering(version: str) -> web.Application:
    answers = {
        "/v1/health": {"status": "alive", "version": version},
        "/v1/backends": {"backends": [{"name": "cpu", "available": True, "detail": "x86_64"}]},
        "/v1/resources": {"ram_total_bytes": 1 << 30},
    }

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(answers[request.path])

    app = web.Application()
    for path in answers:
        app.router.add_get(path, answer)
    return app


async def _check(version: str) -> dict:
    async with TestServer(_hive_answering(version)) as server, aiohttp.ClientSession() as session:
        return await check_hive(HiveClient(str(server.make_url("")), session), "gpu-1")


def test_a_hive_of_the_same_release_passes_with_its_backends_and_resources() -> None:
    result = asyncio.run(_check(__version__))
    assert result["version"] == __version__
    assert result["backends"][0]["name"] == "cpu" and result["resources"]["ram_total_bytes"] == 1 << 30


@pytest.mark.parametrize("version", ["9.0.0", "0.0.1", ""])
def test_a_hive_of_another_release_is_refused_with_hive_version_mismatch(version: str) -> None:
    with pytest.raises(ApiError) as caught:
        asyncio.run(_check(version))
    assert (caught.value.status, caught.value.code) == (503, "HIVE_VERSION_MISMATCH")
    assert caught.value.details["queen_version"] == __version__
