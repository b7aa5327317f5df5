"""Inference tasks: validate, claim a slot, run generation on the engine, stream events."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rbee.common import wire
from rbee.common.deadlines import Deadline
from rbee.common.errors import ApiError
from rbee.common.wire_requests import ChatInference, PromptInference, SamplingParams, parse_inference
from rbee.worker.chat_prompt import render_chat
from rbee.worker.generation import Engine, Job, Outcome
from rbee.worker.slots import Slot, SlotPool
from rbee.worker.token_relay import TokenRelay
from rbee.worker.tool_choice import NO_TOOLS, ToolGrammar, grammar_of
from rbee.worker.tool_parser import ToolCallSplitter

log = logging.getLogger(__name__)
_FINISHED = object()


@dataclass(eq=False)
class Task:
    """One admitted request: its slot, its generation's future and its event queue."""

    task_id: str
    slot: Slot
    prompt_tokens: list[int]
    params: SamplingParams
    stops: tuple[str, ...]
    grammar: ToolGrammar = NO_TOOLS
    splitter: ToolCallSplitter | None = None
    """Splits the output into content and tool calls when the request offers tools."""
    cancel: threading.Event = field(default_factory=threading.Event)
    events: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    started_at: float = field(default_factory=time.monotonic)
    future: asyncio.Future[Outcome] | None = None
    deadline: Deadline | None = None
    expired: bool = False


class InferenceService:
    """Admits inference requests onto slots and streams their native events."""

    def __init__(self, worker_id: str, pool: SlotPool, engine: Engine, max_output_tokens: int = 0) -> None:
        self.worker_id = worker_id
        self.max_output_tokens = max_output_tokens
        """The budget of a request without `max_tokens` (the `max_output_tokens` tunable); 0: the context."""
        self.pool = pool
        self.engine = engine
        self._active: dict[str, Task] = {}
        self.tokens_generated = 0
        self.peak_active = 0
        self._last_progress = time.monotonic()
        self._relay: TokenRelay | None = None

    def stalled(self, now: float, timeout_s: float) -> bool:
        """True when requests run but no token arrived for `timeout_s` seconds."""
        return bool(self._active) and now - self._last_progress > timeout_s

    def _progress(self, task: Task, index: int, text: str) -> None:
        """Runs on the loop for each generated token."""
        self.tokens_generated += 1
        self._last_progress = time.monotonic()
        if not text:
            return
        if task.splitter is None:
            task.events.put_nowait(wire.Token(text, index))
            return
        for piece in task.splitter.feed(text):
            task.events.put_nowait(wire.Token(piece, index) if isinstance(piece, str) else piece)

    @property
    def active_count(self) -> int:
        """Requests currently generating."""
        return len(self._active)

    def admit(self, body: Mapping[str, Any], deadline: Deadline | None = None) -> Task:
        """Validate a request body and claim a slot for it (503 when none is free)."""
        params = parse_inference(body)
        task_id = params.task_id
        if task_id in self._active:
            raise ApiError(409, "TASK_EXISTS", "a task with this id is already running")
        slot = self.pool.acquire(task_id)
        try:
            prompt_tokens, stops = self._prompt_tokens(params)
        except BaseException:
            self.pool.release(slot)
            raise
        context_tokens = self.engine.context_tokens
        if len(prompt_tokens) >= context_tokens:
            self.pool.release(slot)
            raise ApiError(
                400,
                "PROMPT_TOO_LONG",
                "the prompt does not fit the model's context window",
                {"prompt_tokens": len(prompt_tokens), "context_tokens": context_tokens},
            )
        if params.max_tokens is None:
            params = params.model_copy(update={"max_tokens": self.max_output_tokens or context_tokens})
        grammar, splitter = NO_TOOLS, None
        if isinstance(params, ChatInference) and params.tool_mode != "none":
            try:
                grammar = grammar_of(params)
            except BaseException:
                self.pool.release(slot)
                raise
            splitter = ToolCallSplitter(frozenset(tool.function.name for tool in params.tools or ()))
        task = Task(task_id, slot, prompt_tokens, params, stops + params.stop, grammar, splitter,
                    deadline=deadline)
        self._active[task_id] = task
        self.peak_active = max(self.peak_active, len(self._active))
        self._launch(task)
        return task

    def _launch(self, task: Task) -> None:
        """Hand the task to the engine; the slot is freed when the engine has finished it."""
        loop = asyncio.get_running_loop()
        if self._relay is None:
            self._relay = TokenRelay(loop)
        relay = self._relay

        def emit(index: int, text: str) -> None:
            relay.call(self._progress, task, index, text)

        if len(self._active) == 1:
            self._last_progress = time.monotonic()
        job = Job(task.prompt_tokens, task.params, task.stops, task.cancel, emit,
                  grammar=task.grammar.gbnf, grammar_triggers=task.grammar.triggers)
        task.future = asyncio.wrap_future(self.engine.start(task.slot.index, job), loop=loop)

        def finished(_: asyncio.Future[Outcome]) -> None:
            self._active.pop(task.task_id, None)
            self.pool.release(task.slot)
            task.events.put_nowait(_FINISHED)

        task.future.add_done_callback(finished)
        if task.deadline is not None:
            timer = loop.call_later(max(0.0, task.deadline.remaining_s()), self._expire, task)
            task.future.add_done_callback(lambda _: timer.cancel())

    @staticmethod
    def _expire(task: Task) -> None:
        """The task's deadline passed: stop generating and report it."""
        task.expired = True
        task.cancel.set()

    def _prompt_tokens(self, request: PromptInference | ChatInference) -> tuple[list[int], tuple[str, ...]]:
        if isinstance(request, ChatInference):
            bos, eos = self.engine.special_texts()
            messages = [message.template_message() for message in request.messages]
            tools = request.tool_wire().get("tools") if request.tool_mode != "none" else None
            chat = render_chat(messages, self.engine.chat_template, bos, eos, tools)
            own_bos = bool(bos) and chat.parse_special and chat.text.startswith(bos)
            return self.engine.tokenize(chat.text, chat.parse_special, add_bos=not own_bos), chat.stops
        return self.engine.tokenize(request.prompt, False), ()

    def cancel(self, task_id: str) -> bool:
        """Ask a running task to stop; False when no such task runs."""
        task = self._active.get(task_id)
        if task is None:
            return False
        task.cancel.set()
        return True

    def cancel_all(self) -> None:
        """Ask every running task to stop (shutdown)."""
        for task in self._active.values():
            task.cancel.set()

    async def stream(self, task: Task) -> AsyncIterator[wire.TaskEvent]:
        """Yield the task's started, token and end/error events.

        Callers set `task.cancel` however they stop reading; the slot itself is released when
        the engine has finished the generation, however the request ends.
        """
        yield wire.Started(task.task_id, self.worker_id, task.slot.index, len(task.prompt_tokens),
                           task.deadline.header if task.deadline else None)
        while (item := await task.events.get()) is not _FINISHED:
            yield item
        if task.splitter is not None and task.future is not None and task.future.exception() is None:
            for piece in task.splitter.flush():
                yield wire.Token(piece, task.future.result().tokens_out) if isinstance(piece, str) else piece
        yield self._final_event(task)

    def _final_event(self, task: Task) -> wire.End | wire.Error:
        assert task.future is not None
        error = task.future.exception()
        if error is not None:
            log.error("generation failed for task %s: %r", task.task_id, error)
            return wire.generation_failed()
        if task.expired:
            return wire.deadline_exceeded()
        outcome = task.future.result()
        duration = time.monotonic() - task.started_at
        return wire.End(outcome.tokens_out, outcome.stop_reason, round(duration * 1000, 1),
                        round(outcome.tokens_out / duration, 2) if duration else 0.0)
