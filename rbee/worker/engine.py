"""llama.cpp through llama-cpp-python: loading a context and the blocking generation loop of
the simple engine (one context per slot), plus the llama helpers both engines share.

Generation runs in a slot's own thread, never on the event loop.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from rbee.common.wire import StopReason
from rbee.worker.generation import Job, Outcome
from rbee.worker.gpu_params import GpuParams, layers_on_gpu
from rbee.worker.token_rules import TokenRules

_LOAD_LOCK = threading.Lock()


def amx_compiled_in() -> bool:
    """True when this llama.cpp build carries the AMX int8 kernels."""
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


@contextmanager
def _without_extra_buffer_types() -> Iterator[None]:
    """Make llama-cpp-python create models with `use_extra_bufts = false`.

    llama.cpp's AMX weight repacking segfaults in `ggml_backend_amx_mul_mat` on Gemma 3
    (llama.cpp issue 20824, reproduced here with llama-cpp-python 0.3.36), and `Llama` does
    not expose the flag, so the default-params factory it calls is wrapped while loading.
    """
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def params_without_extra_buffers() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = params_without_extra_buffers
    try:
        yield
    finally:
        lib.llama_model_default_params = original


def engine_offloads_to_gpu() -> bool:
    """True when the installed llama.cpp build can offload layers to a GPU."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def load_context(
    model_path: str, n_ctx: int, n_threads: int | None = None, on_gpu: bool = False, device: int = 0,
    gpu_layers: int | None = None, split_mode: str = "none", tensor_split: tuple[float, ...] | None = None,
) -> Any:
    """Load the GGUF into a new llama context: `gpu_layers` layers (default: all when `on_gpu`)
    on GPU `device`, or split over the visible GPUs by `split_mode` and `tensor_split`."""
    from llama_cpp import Llama

    gpu = GpuParams(layers_on_gpu(on_gpu, gpu_layers), device, split_mode, tensor_split)
    threads = n_threads or max(1, os.cpu_count() or 1)
    guard = _without_extra_buffer_types() if amx_compiled_in() else nullcontext()
    with _LOAD_LOCK, guard:
        return Llama(
            model_path=model_path,
            n_ctx=n_ctx,
            n_batch=min(512, n_ctx),
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
            **gpu.llama_kwargs(),
        )


def chat_template_of(metadata: dict[str, str]) -> str | None:
    """The model's `tokenizer.chat_template`, if the GGUF has one."""
    return metadata.get("tokenizer.chat_template") or None


def special_texts(model: Any) -> tuple[str, str]:
    """The text of a llama model's BOS and EOS tokens ('' for a token the model lacks)."""

    def text(token: int) -> str:
        return model.token_get_text(token) if token >= 0 else ""

    return text(model.token_bos()), text(model.token_eos())


def tokenize(context: Any, text: str, parse_special: bool, add_bos: bool = True) -> list[int]:
    """Tokenize a prompt, with BOS unless told; special tokens are parsed only for rendered templates."""
    return context.tokenize(text.encode("utf-8"), add_bos=add_bos, special=parse_special)


PIECE_BYTES = 256
"""Room for one token's text; llama.cpp reports a longer piece's size, and it is asked again."""


def token_piece(vocab: Any, token: int) -> bytes:
    """One token's bytes as it reads in the output (a control token's own text included)."""
    import ctypes

    import llama_cpp

    size = PIECE_BYTES
    while True:
        buffer = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, True)
        if n >= 0:
            return buffer.raw[:n]
        size = -n


def is_end_of_generation(vocab: Any, token: int) -> bool:
    """True for EOS, EOT and the model's other end-of-generation tokens."""
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(vocab, token))


def generate(context: Any, job: Job, on_token: Callable[[int], None] | None = None) -> Outcome:
    """Generate until max tokens, end of generation, a stop sequence or cancellation, sampling
    with the job's own chain (rbee.worker.sampling) on the context's last logits.

    `job.emit` is called once per generated token with the text it releases (possibly empty:
    a partial UTF-8 sequence or a possible stop sequence is held back), `on_token` (when given)
    just before. Text is detokenized one token at a time, so the cost per token stays constant
    however long the output grows.
    """
    from rbee.worker.logprobs import logits_at, token_logprobs
    from rbee.worker.sampling import build_sampler

    model = context._model
    is_end = functools.partial(is_end_of_generation, model.vocab)
    rules = TokenRules(job, context.n_ctx(), is_end, context.detokenize, on_token)
    stop_reason = StopReason.MAX_TOKENS
    if rules.budget <= 0:
        return rules.finish(stop_reason)
    sampler = build_sampler(job, model)
    n_probs = job.params.n_probs
    try:
        context.reset()
        context.eval(job.prompt_tokens)
        while True:
            if job.cancel.is_set():
                stop_reason = StopReason.CANCELLED
                break
            token = sampler.sample(context._ctx, -1)
            logprobs = None
            if n_probs is not None:
                logits = logits_at(context._ctx.ctx, -1, context.n_vocab())
                logprobs = token_logprobs(logits, token, n_probs, functools.partial(token_piece, model.vocab))
            if (ended := rules.accept(token, logprobs)) is not None:
                stop_reason = ended
                break
            context.eval([token])
    finally:
        sampler.close()
    return rules.finish(stop_reason)
