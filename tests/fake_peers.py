"""The far side of the queen's HTTP calls, served by real aiohttp servers on 127.0.0.1:0 in the
test's own event loop: a hive whose worker list the test sets, and a worker whose answer to
each inference request the test scripts. The queen's real clients talk to them over TCP."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rbee.common import sse
from rbee.common.errors import ApiError, error_body
from rbee.queen.nodes.hive_client import HiveClient

HOLD_S = 30.0
"""The longest a scripted worker holds a stream open waiting for the test (never reached)."""
WORKER_IDS = itertools.count(1)
"""Worker ids unique over every fake hive of a test run, as real hives' ids are."""


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve `app` on a free loopback port; returns the runner and the base URL."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


class FakeHive:
    """A hive's API: `/v1/health`, `/v1/resources`, `/v1/workers/{list,spawn,stop}`, `/v1/models/list`.

    A spawned worker reports `loading` for `lists_while_loading` list calls, then
    `after_loading` (a state, or None: the worker vanished, as a crashed one leaves the list).
    Spawns resolve backends as a hive does with `gpus` (entries of `/v1/resources`): `auto` is
    `cuda` on the first GPU when there is one, else `cpu`; `cuda` without GPUs is refused with 400
    BACKEND_UNAVAILABLE; `refusal` (an ApiError) refuses every spawn.
    """

    def __init__(self, worker_url: str = "http://127.0.0.1:9") -> None:
        self.worker_url = worker_url
        self.workers: list[dict[str, Any]] = []
        self.models: list[dict[str, Any]] = []
        self.spawns: list[dict[str, Any]] = []
        self.stops: list[dict[str, Any]] = []
        self.list_calls = 0
        self.lists_while_loading = 1
        self.after_loading: str | None = "idle"
        self.gpus: list[dict[str, Any]] = []
        self.refusal: ApiError | None = None
        self.url = ""
        self._loading: dict[str, int] = {}
        self._runner: web.AppRunner | None = None

    def add_worker(self, model: str, state: str = "idle", slots: int = 1, backend: str = "cpu",
                   url: str | None = None, device: int | None = None,
                   embedding: bool = False) -> dict[str, Any]:
        """A worker this hive reports (serving embeddings when `embedding`); one added `loading`
        loads as a spawned one does."""
        worker = {"worker_id": f"w-{next(WORKER_IDS)}", "model": model, "url": url or self.worker_url,
                  "slots": slots, "state": state, "restarts": 0, "backend": backend, "device": device,
                  "embedding": embedding}
        self.workers.append(worker)
        if state == "loading":
            self._loading[worker["worker_id"]] = self.lists_while_loading
        return worker

    def client(self, session: Any) -> HiveClient:
        """The queen's real client for this hive."""
        return HiveClient(self.url, session)

    async def start(self) -> FakeHive:
        app = web.Application()
        app.router.add_get("/v1/health", self._health)
        app.router.add_get("/v1/resources", self._resources)
        app.router.add_get("/v1/workers/list", self._list)
        app.router.add_post("/v1/workers/spawn", self._spawn)
        app.router.add_post("/v1/workers/stop", self._stop)
        app.router.add_get("/v1/models/list", self._list_models)
        self._runner, self.url = await serve(app)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _resources(self, _: web.Request) -> web.Response:
        return web.json_response({"cpu_count": 2, "gpus": self.gpus})

    async def _list(self, _: web.Request) -> web.Response:
        self.list_calls += 1
        for worker in list(self.workers):
            left = self._loading.get(worker["worker_id"])
            if left is None:
                continue
            if left > 0:
                self._loading[worker["worker_id"]] = left - 1
                continue
            del self._loading[worker["worker_id"]]
            if self.after_loading is None:
                self.workers.remove(worker)
            else:
                worker["state"] = self.after_loading
        return web.json_response({"workers": self.workers})

    async def _spawn(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.spawns.append(body)
        backend = body["backend"]
        if backend == "auto":
            backend = "cuda" if self.gpus else "cpu"
        refusal = self.refusal
        if refusal is None and backend == "cuda" and not self.gpus:
            refusal = ApiError(400, "BACKEND_UNAVAILABLE", "the cuda backend cannot be used on this node")
        if refusal is not None:
            return web.json_response(refusal.body("c0ffee"),
                                     status=refusal.status)
        device = self.gpus[0]["index"] if backend == "cuda" else None
        worker = self.add_worker(body["model"], "loading", body["slots"], backend, device=device,
                                 embedding=body["embedding"])
        return web.json_response(worker)

    async def _stop(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.stops.append(body)
        return web.json_response({"worker_id": body["worker_id"], "state": "draining"})

    async def _list_models(self, _: web.Request) -> web.Response:
        return web.json_response({"models": self.models})


class NodeHandle:
    """What Placement asks of a node's hive owner (HiveHandle): a real HiveClient, and a hive
    that "starts" at once, or fails to with `fails`."""

    def __init__(self, name: str, client: HiveClient, fails: ApiError | None = None) -> None:
        self.name = name
        self.client = client
        self.fails = fails
        self.starts = 0
        """How often Placement asked the hive to be running."""
        self.spec: Any = None
        self.preflight: dict[str, Any] | None = None

    async def ensure_running(self) -> None:
        self.starts += 1
        if self.fails is not None:
            raise self.fails

    async def stop(self, grace_s: float) -> None:
        pass

    def reload(self) -> None:
        pass


Play = Callable[["FakeWorker", web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


class FakeWorker:
    """A worker's `/v1/inference` (SSE) and `DELETE /v1/inference/{id}`.

    Each inference request is answered by the next of `plays` (the last one repeats). The
    bodies and headers received, and the task ids cancelled, are kept for the test."""

    def __init__(self, *plays: Play) -> None:
        self.plays = list(plays)
        self.requests: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.cancelled: list[str] = []
        self._cancels: dict[str, asyncio.Event] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> FakeWorker:
        app = web.Application()
        app.router.add_post("/v1/inference", self._inference)
        app.router.add_delete("/v1/inference/{task_id}", self._cancel)
        self._runner, self.url = await serve(app)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _inference(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((body, dict(request.headers)))
        play = self.plays[min(len(self.requests), len(self.plays)) - 1]
        return await play(self, request, body)

    def cancel_of(self, task_id: str) -> asyncio.Event:
        """Set once `DELETE /v1/inference/{task_id}` arrived."""
        return self._cancels.setdefault(task_id, asyncio.Event())

    async def _cancel(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        self.cancelled.append(task_id)
        self.cancel_of(task_id).set()
        return web.Response(status=204)


def started(body: dict[str, Any]) -> dict[str, Any]:
    return {"type": "started", "task_id": body["task_id"], "worker_id": "w-1", "slot": 0,
            "prompt_tokens": 3}


def token(text: str, index: int) -> dict[str, Any]:
    return {"type": "token", "token": text, "index": index}


def end(tokens_out: int, stop_reason: str = "max_tokens") -> dict[str, Any]:
    return {"type": "end", "tokens_out": tokens_out, "stop_reason": stop_reason, "duration_ms": 1.0}


def _tokens(texts: tuple[str, ...]) -> list[dict[str, Any]]:
    return [token(text, index) for index, text in enumerate(texts)]


async def _events(request: web.Request, events: list[dict[str, Any]]) -> web.StreamResponse:
    response = await sse.open_stream(request)
    for event in events:
        await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
    return response


def streams(*tokens: str, stop_reason: str = "max_tokens") -> Play:
    """Answer with started, one token event per text, end and [DONE]."""

    async def play(_: FakeWorker, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        events = [started(body), *_tokens(tokens), end(len(tokens), stop_reason)]
        response = await _events(request, events)
        await sse.send_data(response, sse.DONE)
        return response

    return play


def dies_after(*tokens: str) -> Play:
    """Send started and these tokens, then end the stream without [DONE] (the worker died)."""

    async def play(_: FakeWorker, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return await _events(request, [started(body), *_tokens(tokens)])

    return play


def fails_with(event: dict[str, Any], *tokens: str) -> Play:
    """Send started, these tokens, then `event` (an error event) and [DONE]."""

    async def play(_: FakeWorker, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await _events(request, [started(body), *_tokens(tokens), event])
        await sse.send_data(response, sse.DONE)
        return response

    return play


def sends(*events: dict[str, Any]) -> Play:
    """Send these events as they are (well-formed or not), then [DONE]."""

    async def play(_: FakeWorker, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await _events(request, list(events))
        await sse.send_data(response, sse.DONE)
        return response

    return play


def writes(*chunks: bytes) -> Play:
    """Write these bytes as they are, one write each with a pause between, and nothing else."""

    async def play(_: FakeWorker, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await sse.open_stream(request)
        for chunk in chunks:
            await response.write(chunk.replace(b"TASK_ID", body["task_id"].encode()))
            await asyncio.sleep(0.05)
        return response

    return play


def refuses(status: int, code: str) -> Play:
    """Answer with an error response before any event."""

    async def play(_: FakeWorker, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.json_response(error_body(status, code, "refused by the test", "c0ffee"), status=status)

    return play


def holds(*tokens: str) -> Play:
    """Send started and these tokens, then hold the stream open until the task is cancelled
    at the worker (then end it with stop reason `cancelled`) or the client goes away."""

    async def play(worker: FakeWorker, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await _events(request, [started(body), *_tokens(tokens)])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.cancel_of(body["task_id"]).wait(), HOLD_S)
        await response.write(b"data: " + json.dumps(end(len(tokens), "cancelled")).encode() + b"\n\n")
        await sse.send_data(response, sse.DONE)
        return response

    return play
