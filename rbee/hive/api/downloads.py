"""`/v1/models/download` and its SSE progress stream."""

from __future__ import annotations

from aiohttp import web

from rbee.common import sse
from rbee.common.errors import read_json_object
from rbee.common.validation import check_identifier
from rbee.common.wire_requests import ModelDownload
from rbee.hive.app_keys import CATALOG, DOWNLOADER

PROGRESS_INTERVAL_S = 0.25
PROGRESS_PATH = "/v1/models/download/progress"


async def start_download(request: web.Request) -> web.Response:
    """Start (or join) the download of an `hf:`/`https://` model; 202 with the job, 200 when present."""
    body = ModelDownload.parse(await read_json_object(request))
    job = await request.app[CATALOG].download(body.model, body.sha256)
    answer = {**job.to_wire(), "progress_url": f"{PROGRESS_PATH}?id={job.id}"}
    return web.json_response(answer, status=200 if job.finished else 202)


async def download_progress(request: web.Request) -> web.StreamResponse:
    """SSE: `progress` events while the job runs, then `done` or `error`, then `[DONE]`."""
    job = request.app[DOWNLOADER].job(check_identifier("id", request.query.get("id")))
    response = await sse.open_stream(request)
    async for event in job.watch(PROGRESS_INTERVAL_S):
        await sse.send_data(response, event)
    await sse.send_data(response, sse.DONE)
    return response
