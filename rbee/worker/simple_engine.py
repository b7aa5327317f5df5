"""The simple engine: one llama context and one thread per slot (`--engine simple`).

Each slot's context is loaded, used and left by its own thread only, so no context is ever
touched by two threads. Kept beside the batched engine for comparison. A request's choices
(`n` > 1) each decode the prompt in their own context: contexts share no cells to copy.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from rbee.worker import engine
from rbee.worker.faults import Faults
from rbee.worker.generation import Job, LoadSpec, Outcome, Progress


class SimpleEngine:
    """Slot `i` generates with `contexts[i]` on `executors[i]`'s one thread."""

    def __init__(self, contexts: list[Any], executors: list[ThreadPoolExecutor], faults: Faults) -> None:
        self._contexts = contexts
        self._executors = executors
        self._faults = faults
        self.context_tokens = contexts[0].n_ctx()
        self.vocab_size = contexts[0].n_vocab()
        self.chat_template = engine.chat_template_of(contexts[0].metadata)
        self.prompt_tokens_reused = 0
        self.prompt_tokens_decoded = 0
        self._count_lock = threading.Lock()

    @classmethod
    async def load(cls, spec: LoadSpec, faults: Faults, progress: Progress) -> SimpleEngine:
        """Load one context per slot, each in its slot's thread, reporting the share loaded."""
        loop = asyncio.get_running_loop()
        contexts: list[Any] = []
        executors: list[ThreadPoolExecutor] = []
        try:
            for index in range(spec.slots):
                executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"slot-{index}")
                executors.append(executor)
                await loop.run_in_executor(executor, faults.on_load)
                contexts.append(await loop.run_in_executor(
                    executor, engine.load_context,
                    spec.model_path, spec.ctx_size, spec.threads, spec.on_gpu, spec.device,
                    spec.gpu_layers, spec.split_mode, spec.tensor_split,
                ))
                progress((index + 1) / spec.slots)
        except BaseException:
            for executor in executors:
                executor.shutdown(wait=False, cancel_futures=True)
            raise
        return cls(contexts, executors, faults)

    def tokenize(self, text: str, parse_special: bool, add_bos: bool = True) -> list[int]:
        """Prompt tokens, with BOS unless told (the vocabulary is shared and read-only)."""
        return engine.tokenize(self._contexts[0], text, parse_special, add_bos)

    def special_texts(self) -> tuple[str, str]:
        """The text of the BOS and EOS tokens."""
        return engine.special_texts(self._contexts[0]._model)

    @staticmethod
    def slot_for(prompt_tokens: list[int], free: list[int]) -> int:
        """The first free slot: a slot's context keeps no cells between generations."""
        return free[0]

    def start(self, slot: int, job: Job) -> Future[Outcome]:
        """Generate in the slot's own thread."""
        return self._executors[slot].submit(self._run, self._contexts[slot], job)

    def start_all(self, starts: list[tuple[int, Job]]) -> list[Future[Outcome]]:
        """Start each job in its own slot's thread."""
        return [self.start(slot, job) for slot, job in starts]

    def _run(self, context: Any, job: Job) -> Outcome:
        self._faults.on_generation_start()
        with self._count_lock:
            self.prompt_tokens_decoded += len(job.prompt_tokens)
        return engine.generate(context, job, self._faults.on_token)

    def shutdown(self) -> None:
        """Stop the slot threads (after their current generation returns)."""
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)
