"""Sending a task to a worker and relaying its native event stream, with cancellation."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from rbee.common import deadlines, log_context, sse, wire
from rbee.common.audit import Audit, no_audit, prompt_digest
from rbee.common.deadlines import Deadline
from rbee.common.errors import CORRELATION_HEADER, ApiError
from rbee.common.http import Headers, no_headers, raise_for_error
from rbee.common.model_refs import public_ref
from rbee.common.native_stream import NativeStreamReader, StreamItem
from rbee.queen.routing.backend_policy import AUTO
from rbee.queen.routing.loading_watch import LoadingWatch
from rbee.queen.routing.placement import Placement
from rbee.queen.routing.task_meter import TaskMeter
from rbee.queen.routing.tenant import ANONYMOUS, Tenant
from rbee.queen.routing.waiting import NOTE_INTERVAL_S, NoteThrottle, WaitNote, loading_note, queued_note
from rbee.queen.routing.worker_registry import WorkerView

log = logging.getLogger(__name__)
CANCEL_TIMEOUT_S = 2.0
FINISHED_TASKS_REMEMBERED = 10_000
MAX_ATTEMPTS = 3
SHORTEST_TIMEOUT_S = 0.001
RETRY_PAUSE_S = 0.25
SLOTS_BUSY = "ALL_SLOTS_BUSY"
"""A worker's answer while the slot of a request that just ended is not free there yet (the queen
counts it free when its own stream ends): asked again after a pause, like a lost worker."""
DRAIN_POLL_S = 0.05
"""How often a drain looks whether the running requests have finished."""


@dataclass(frozen=True)
class Task:
    """One client request for a generation, as the dispatcher runs it."""

    model: str
    task_id: str
    worker_body: dict[str, Any]
    correlation_id: str
    deadline: Deadline
    backend: str = AUTO
    """The request's backend policy (`BackendPolicy.resolve`)."""
    node: str | None = None
    """The node to run on; None lets the queen choose."""
    parse_tokens: bool = True
    """Whether token runs carry their tokens parsed (False: relayed as the bytes they came in)."""
    tenant: Tenant = ANONYMOUS
    """Who the task waits for in the admission queue (its API key: fair share between keys)."""


def _prompt_tokens(outcome: dict[str, Any]) -> dict[str, int]:
    """The prompt tokens an outcome record already holds (from the task's `started` event)."""
    return {"prompt_tokens": outcome["prompt_tokens"]} if "prompt_tokens" in outcome else {}


async def wait_drained(running: Callable[[], int], budget_s: float, what: str) -> None:
    """Wait up to `budget_s` until `running()` is 0; log how many `what` were left if not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    while running() and loop.time() < deadline:
        await asyncio.sleep(DRAIN_POLL_S)
    if running():
        log.warning("drain budget spent with %d %s still running", running(), what)


class Dispatcher:
    """Runs tasks on workers; knows which worker runs each task so it can be cancelled."""

    def __init__(
        self,
        placement: Placement,
        session: aiohttp.ClientSession,
        auth: Headers = no_headers,
        audit: Audit = no_audit,
        *,
        meter: TaskMeter,
    ) -> None:
        self._placement = placement
        self._meter = meter
        self._session = session
        self._auth = auth
        self._audit = audit
        self._running: dict[str, WorkerView] = {}
        self._finished: collections.deque[str] = collections.deque(maxlen=FINISHED_TASKS_REMEMBERED)
        self._owners: dict[str, str] = {}
        """The name of the key whose request each running task is."""
        self._background: set[asyncio.Task[None]] = set()
        self._draining = False
        self._loading = LoadingWatch(session, auth)

    async def drain(self, budget_s: float) -> None:
        """Refuse new tasks and wait up to `budget_s` for running ones to finish."""
        self._draining = True
        await wait_drained(lambda: len(self._running), budget_s, "task(s)")

    @property
    def draining(self) -> bool:
        """True once the queen stopped admitting tasks."""
        return self._draining

    @property
    def running_count(self) -> int:
        """Tasks streaming right now."""
        return len(self._running)

    @staticmethod
    def new_task_id() -> str:
        """A fresh task id."""
        return uuid.uuid4().hex

    async def run(self, task: Task) -> AsyncIterator[StreamItem | WaitNote]:
        """Run a task on a worker and yield its native events (token events in runs of those
        that arrived together), and notes while it waits for the worker; meter it, and audit
        its start and its outcome."""
        log_context.bind(task_id=task.task_id)
        body = task.worker_body
        text = body.get("prompt") or json.dumps(body.get("messages"), sort_keys=True)
        budget = {"max_tokens": body["max_tokens"]} if body.get("max_tokens") is not None else {}
        self._audit("task.submitted", task_id=task.task_id, model=public_ref(task.model),
                    correlation_id=task.correlation_id, prompt_sha256=prompt_digest(text), **budget)
        outcome: dict[str, Any] = {"event": "task.cancelled", "reason": "the client went away"}
        timing = self._meter.start()
        try:
            async with aclosing(self._attempts(task)) as attempts:
                async for event in attempts:
                    timing.saw(event)
                    if isinstance(event, wire.Started):
                        outcome["prompt_tokens"] = event.prompt_tokens
                    elif isinstance(event, wire.End):
                        outcome = {"event": "task.completed", "tokens_out": event.tokens_out,
                                   "stop_reason": event.stop_reason, **_prompt_tokens(outcome)}
                    elif isinstance(event, wire.Error):
                        outcome = {"event": "task.failed", "code": event.code, **_prompt_tokens(outcome)}
                    yield event
        except Exception as exc:
            timing.outcome = "failed"
            if isinstance(exc, ApiError):
                outcome = {"event": "task.failed", "code": exc.code}
            raise
        finally:
            timing.finish()
            self._audit(outcome.pop("event"), task_id=task.task_id, **outcome)

    async def _attempts(self, task: Task) -> AsyncIterator[StreamItem | WaitNote]:
        """Run a task on a worker and yield its native events.

        While it waits for a worker's slot, a `WaitNote` now and then says where it waits.
        The worker's `started` event, with the queen's additions (node, model, the worker's
        backend and device, the time waited for the slot), is held back
        until the first token (or the end), so a worker that dies before producing a token is
        replaced without the client noticing:
        the task is retried on another (or restarted) worker. A failure that cannot be hidden
        any more becomes an `error` event; one before any event raises ApiError instead.
        Closing the iterator early, or the deadline passing, cancels the task at the worker.
        """
        if self._draining:
            raise ApiError(503, "DRAINING", "the queen is shutting down", headers={"Retry-After": "1"})
        model, task_id, deadline = task.model, task.task_id, task.deadline
        body = {**task.worker_body, "task_id": task_id}
        headers = {CORRELATION_HEADER: task.correlation_id, deadlines.HEADER: deadline.header, **self._auth()}
        delivered = False
        busy: ApiError | None = None
        prefix = self._placement.affinity.keys(task.worker_body)
        loop = asyncio.get_running_loop()
        since = loop.time()
        try:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                async with AsyncExitStack() as stack:
                    hold = asyncio.ensure_future(self._hold(stack, task, prefix))
                    try:
                        async for note in self._notes(task, hold, since):
                            yield note
                    finally:
                        await _settle(hold)
                    worker = hold.result()
                    waited_ms = round((loop.time() - since) * 1000)
                    self._running[task_id] = worker
                    self._owners[task_id] = task.tenant.name
                    finished = False
                    held: wire.Started | None = None
                    try:
                        # The deadline as aiohttp's total timeout: checked on every read, with no
                        # timer set up per event, it raises TimeoutError once the deadline passes
                        # (0 would mean no limit, so a passed deadline becomes the shortest one).
                        timeout = aiohttp.ClientTimeout(total=max(deadline.remaining_s(), SHORTEST_TIMEOUT_S),
                                                        connect=self._session.timeout.connect)
                        async with self._session.post(
                            f"{worker.url}/v1/inference", json=body, headers=headers, timeout=timeout
                        ) as response:
                            if response.status >= 300:
                                finished = True
                                await raise_for_error(response, "worker")
                            reader = NativeStreamReader(task.parse_tokens)
                            content = response.content
                            while not reader.done:
                                chunk = await content.readany()
                                if not chunk:
                                    raise sse.StreamTruncated("event stream ended without [DONE]")
                                for item in reader.feed(chunk):
                                    if isinstance(item, wire.Started) and not delivered:
                                        node = self._placement.node_of(worker)
                                        held = replace(item, task_id=task_id, node=node, model=model,
                                                       backend=worker.backend, device=worker.device,
                                                       queue_wait_ms=waited_ms)
                                        continue
                                    if held is not None:
                                        yield held
                                        held = None
                                    delivered = True
                                    yield item
                        finished = True
                        return
                    except TimeoutError:
                        log.warning("task %s passed its deadline at worker %s", task_id, worker.worker_id)
                        if not delivered:
                            raise deadlines.expired() from None
                        yield wire.deadline_exceeded()
                        return
                    except ApiError as err:
                        if err.code != SLOTS_BUSY:
                            raise
                        busy = err
                        log.info("worker %s had no free slot yet for task %s (attempt %d)",
                                 worker.worker_id, task_id, attempt)
                    except (aiohttp.ClientError, sse.StreamTruncated, ValueError) as exc:
                        finished = True
                        log.warning("task %s lost worker %s (attempt %d): %s",
                                    task_id, worker.worker_id, attempt, exc)
                        if delivered:
                            yield wire.worker_crashed()
                            return
                    finally:
                        self._running.pop(task_id, None)
                        self._owners.pop(task_id, None)
                        if not finished:
                            self._cancel_in_background(worker, task_id)
                log.info("retrying task %s before its first token", task_id)
                await asyncio.sleep(RETRY_PAUSE_S * attempt)
        finally:
            self._finished.append(task_id)
        raise busy or wire.worker_crashed().to_api_error(503, {"attempts": MAX_ATTEMPTS})

    async def _hold(self, stack: AsyncExitStack, task: Task, prefix: tuple[bytes, ...]) -> WorkerView:
        """A slot of a worker for `task` (whose prompt has the affinity keys `prefix`), held until
        `stack` closes (504 once its deadline passes)."""
        try:
            async with asyncio.timeout(task.deadline.remaining_s()):
                placed = self._placement.worker_for(task.model, task.backend, task.node, waiter=task.task_id,
                                                    prefix=prefix, tenant=task.tenant)
                with self._meter.waiting():
                    return await stack.enter_async_context(placed)
        except TimeoutError as exc:
            raise deadlines.expired() from exc

    async def _notes(
        self, task: Task, hold: asyncio.Future[WorkerView], since: float
    ) -> AsyncIterator[WaitNote]:
        """Notes on `task`'s wait, one look every `NOTE_INTERVAL_S` until `hold` is settled."""
        loop = asyncio.get_running_loop()
        throttle = NoteThrottle()
        while True:
            await asyncio.wait({hold}, timeout=NOTE_INTERVAL_S)
            if hold.done():
                return
            text = self._wait_note(task)
            now = loop.time()
            if text is not None and throttle.admit(text, now):
                yield WaitNote(text, round((now - since) * 1000))

    def _wait_note(self, task: Task) -> str | None:
        """Where `task` waits now: its place in the admission queue, else its worker's loading."""
        admission = self._placement.admission
        position = admission.position(task.model, task.task_id)
        if position is not None:
            return queued_note(position, admission.eta_s(task.model, position))
        share = self._loading.share(self._placement.loading_workers(task.model))
        return None if share is None else loading_note(share)

    def _cancel_in_background(self, worker: WorkerView, task_id: str) -> None:
        task = asyncio.create_task(self._cancel_at_worker(worker, task_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _cancel_at_worker(self, worker: WorkerView, task_id: str) -> None:
        try:
            async with self._session.delete(
                f"{worker.url}/v1/inference/{task_id}",
                headers=self._auth(),
                timeout=aiohttp.ClientTimeout(total=CANCEL_TIMEOUT_S),
            ) as response:
                log.info("cancelled task %s at worker %s: HTTP %d",
                         task_id, worker.worker_id, response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not cancel task %s at worker %s: %s", task_id, worker.worker_id, exc)

    async def cancel(self, task_id: str, by: str | None = None) -> None:
        """Cancel a running task; finished tasks are accepted silently, unknown ones are 404.

        With `by` (a key's name) only that key's tasks: another key's running task is 404 too."""
        worker = self._running.get(task_id)
        if worker is not None and by is not None and self._owners.get(task_id) != by:
            raise ApiError(404, "TASK_NOT_FOUND", "no task with this id is known")
        if worker is not None:
            self._audit("task.cancelled", task_id=task_id, reason="cancel requested")
            await self._cancel_at_worker(worker, task_id)
        elif task_id not in self._finished:
            raise ApiError(404, "TASK_NOT_FOUND", "no task with this id is known")


async def _settle(hold: asyncio.Future[WorkerView]) -> None:
    """Cancel `hold` unless it is done and wait until it is, its failure marked as seen (a slot it
    got is released with the exit stack it entered)."""
    if not hold.done():
        hold.cancel()
        await asyncio.wait({hold})
    elif not hold.cancelled():
        hold.exception()
