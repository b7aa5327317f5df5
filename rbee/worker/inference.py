"""Inference tasks: validate, claim a slot, run generation on the engine, stream events."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rbee.common import wire
from rbee.common.deadlines import Deadline
from rbee.common.errors import ApiError
from rbee.common.validation import invalid
from rbee.common.wire_requests import ChatInference, PromptInference, SamplingParams, parse_inference
from rbee.worker.chat_prompt import render_chat
from rbee.worker.choices import check_choices, check_logit_bias, choice_params
from rbee.worker.generation import Engine, Job, Outcome
from rbee.worker.grammars import response_grammar
from rbee.worker.slots import Slot, SlotPool
from rbee.worker.token_relay import TokenRelay
from rbee.worker.tool_choice import NO_TOOLS, ToolGrammar, grammar_of
from rbee.worker.tool_parser import ToolCallSplitter

log = logging.getLogger(__name__)
_FINISHED = object()


@dataclass(eq=False)
class Task:
    """One admitted request: its slots (one per choice), its generations' future and its event
    queue."""

    task_id: str
    slots: list[Slot]
    prompt_tokens: list[int]
    params: SamplingParams
    stops: tuple[str, ...]
    grammar: ToolGrammar = NO_TOOLS
    """The grammar of the output (structured output or tool calls) and what switches it on."""
    splitter: ToolCallSplitter | None = None
    """Splits the output into content and tool calls when the request offers tools."""
    cancel: threading.Event = field(default_factory=threading.Event)
    events: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    started_at: float = field(default_factory=time.monotonic)
    future: asyncio.Future[list[Outcome | BaseException]] | None = None
    deadline: Deadline | None = None
    expired: bool = False

    @property
    def slot(self) -> Slot:
        """The slot of the first choice (the one that decodes the prompt)."""
        return self.slots[0]


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

    def _progress(
        self, task: Task, choice: int, index: int, text: str, logprobs: wire.TokenLogprobs | None
    ) -> None:
        """Runs on the loop for each generated token of choice `choice`."""
        self.tokens_generated += 1
        self._last_progress = time.monotonic()
        if task.splitter is None:
            if text or logprobs is not None:
                task.events.put_nowait(wire.Token(text, index, logprobs, choice))
            return
        for piece in task.splitter.feed(text):
            task.events.put_nowait(wire.Token(piece, index) if isinstance(piece, str) else piece)

    @property
    def active_count(self) -> int:
        """Requests currently generating."""
        return len(self._active)

    def admit(self, body: Mapping[str, Any], deadline: Deadline | None = None) -> Task:
        """Validate a request body and claim a slot for each of its choices (503 when too few
        are free)."""
        params = parse_inference(body)
        task_id = params.task_id
        if task_id in self._active:
            raise ApiError(409, "TASK_EXISTS", "a task with this id is already running")
        check_choices(params.n, self.pool.total)
        check_logit_bias(params.logit_bias, self.engine.vocab_size)
        grammar, splitter = self._output_grammar(params)
        prompt_tokens, stops = self._prompt_tokens(params)
        context_tokens = self.engine.context_tokens
        if len(prompt_tokens) >= context_tokens:
            raise ApiError(
                400,
                "PROMPT_TOO_LONG",
                "the prompt does not fit the model's context window",
                {"prompt_tokens": len(prompt_tokens), "context_tokens": context_tokens},
            )
        slots = self._acquire(task_id, prompt_tokens, params.n)
        if params.max_tokens is None:
            params = params.model_copy(update={"max_tokens": self.max_output_tokens or context_tokens})
        task = Task(task_id, slots, prompt_tokens, params, stops + params.stop, grammar, splitter,
                    deadline=deadline)
        self._active[task_id] = task
        self.peak_active = max(self.peak_active, len(self._active))
        self._launch(task)
        return task

    def _acquire(self, task_id: str, prompt_tokens: list[int], count: int) -> list[Slot]:
        """A slot for each of `count` choices: for the first, the one whose cells may hold the
        prompt's prefix; for the others (which copy the first's cells), the least recently used."""
        slots: list[Slot] = []
        try:
            for prompt in [prompt_tokens, *[[]] * (count - 1)]:
                slots.append(self.pool.acquire(task_id, functools.partial(self.engine.slot_for, prompt)))
        except BaseException:
            for slot in slots:
                self.pool.release(slot)
            raise
        return slots

    def _launch(self, task: Task) -> None:
        """Hand each choice to the engine (the later ones copy the first one's prompt cells);
        a slot is freed when the engine has finished its generation."""
        loop = asyncio.get_running_loop()
        if self._relay is None:
            self._relay = TokenRelay(loop)
        relay = self._relay
        if len(self._active) == 1:
            self._last_progress = time.monotonic()
        jobs = [Job(task.prompt_tokens, choice_params(task.params, choice), task.stops, task.cancel,
                    functools.partial(relay.call, self._progress, task, choice), grammar=task.grammar.gbnf,
                    grammar_triggers=task.grammar.triggers,
                    follows=task.slot.index if choice else None)
                for choice in range(len(task.slots))]
        slots = [slot.index for slot in task.slots]
        started = self.engine.start_all(list(zip(slots, jobs, strict=True)))
        futures = []
        for slot, engine_future in zip(task.slots, started, strict=True):
            future = asyncio.wrap_future(engine_future, loop=loop)
            future.add_done_callback(functools.partial(self._release, slot))
            futures.append(future)
        task.future = asyncio.gather(*futures, return_exceptions=True)

        def finished(_: asyncio.Future[list[Outcome | BaseException]]) -> None:
            self._active.pop(task.task_id, None)
            task.events.put_nowait(_FINISHED)

        task.future.add_done_callback(finished)
        if task.deadline is not None:
            timer = loop.call_later(max(0.0, task.deadline.remaining_s()), self._expire, task)
            task.future.add_done_callback(lambda _: timer.cancel())

    @staticmethod
    def _output_grammar(
        params: PromptInference | ChatInference,
    ) -> tuple[ToolGrammar, ToolCallSplitter | None]:
        """The grammar of `response_format` or of the tool calls, and the splitter of the latter
        (one choice, without log probabilities: the splitter holds text back)."""
        if not isinstance(params, ChatInference) or params.tool_mode == "none":
            return ToolGrammar(response_grammar(params.response_format)), None
        if params.response_format is not None:
            raise invalid("response_format", "cannot be combined with tools unless 'tool_choice' is none")
        if params.n > 1:
            raise invalid("n", "must be 1 when tools are offered")
        if params.n_probs is not None:
            raise invalid("logprobs", "cannot be combined with tools unless 'tool_choice' is none")
        names = frozenset(tool.function.name for tool in params.tools or ())
        return grammar_of(params), ToolCallSplitter(names)

    def _release(self, slot: Slot, _: asyncio.Future[Outcome]) -> None:
        self.pool.release(slot)

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
        final = self._final_event(task)
        if task.splitter is not None and isinstance(final, wire.End):
            for piece in task.splitter.flush():
                yield wire.Token(piece, final.tokens_out) if isinstance(piece, str) else piece
        yield final

    def _final_event(self, task: Task) -> wire.End | wire.Error:
        assert task.future is not None
        results = task.future.result()
        outcomes = [result for result in results if isinstance(result, Outcome)]
        if len(outcomes) < len(results):
            error = next(result for result in results if not isinstance(result, Outcome))
            log.error("generation failed for task %s: %r", task.task_id, error)
            return wire.generation_failed()
        if task.expired:
            return wire.deadline_exceeded()
        tokens_out = sum(outcome.tokens_out for outcome in outcomes)
        duration = time.monotonic() - task.started_at
        stop_reasons = tuple(outcome.stop_reason for outcome in outcomes) if len(outcomes) > 1 else ()
        return wire.End(tokens_out, outcomes[0].stop_reason, round(duration * 1000, 1),
                        round(tokens_out / duration, 2) if duration else 0.0, stop_reasons,
                        outcomes[0].prompt_tokens_cached)
