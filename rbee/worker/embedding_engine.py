"""The embedding engine: one llama context with embeddings on, owned by one thread.

The pooling is the GGUF's own (`<arch>.pooling_type`: mean, CLS or last token); a model that
names none (a generative model such as Llama) is mean-pooled. A reranking model (pooling `rank`)
gives scores, not vectors, and is refused. Every vector is L2-normalised, as OpenAI's are.

Inputs are packed into as few `llama_decode` calls as fit: each input is one sequence of the
batch, a batch holds at most the context's tokens (`context_tokens`, also the most one input may
hold) and `EMBEDDING_SEQUENCES` inputs. Identical inputs of a request are embedded once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rbee.worker.faults import Faults
from rbee.worker.generation import LoadSpec

log = logging.getLogger(__name__)
EMBEDDING_SEQUENCES = 64
"""Inputs one `llama_decode` call embeds at most (llama.cpp's sequence ids of the context)."""
POOLING_NAMES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}
"""llama.cpp's `enum llama_pooling_type`, by value."""
_NONE, _MEAN, _RANK = 0, 1, 4


def pooling_of(metadata: Mapping[str, Any]) -> int:
    """The pooling type to embed with: the GGUF's `<arch>.pooling_type`, mean when it names none
    (or `none`); ValueError for a reranker (`rank`) or an unknown type."""
    arch = metadata.get("general.architecture", "")
    value = metadata.get(f"{arch}.pooling_type")
    pooling = int(value) if value is not None else _NONE
    if pooling == _NONE or pooling < 0:
        return _MEAN
    if pooling == _RANK:
        raise ValueError("the model is a reranker (pooling `rank`): it scores pairs, it has no embeddings")
    if pooling not in POOLING_NAMES:
        raise ValueError(f"unknown llama.cpp pooling type {pooling}")
    return pooling


def unit_float32(vector: np.ndarray) -> list[float]:
    """`vector` scaled to unit L2 norm (a zero vector stays zero), each value a float32 as the
    model computes them, so its float32 bytes (base64) carry exactly the same numbers."""
    wide = vector.astype(np.float64)
    norm = float(np.linalg.norm(wide))
    return (wide / norm if norm > 0 else wide).astype(np.float32).tolist()


def batches(lengths: list[int], max_tokens: int, max_sequences: int) -> list[list[int]]:
    """The indexes of inputs of `lengths` tokens grouped into decode batches, in order: each of at
    most `max_tokens` tokens and `max_sequences` inputs (every length is at most `max_tokens`)."""
    groups: list[list[int]] = []
    tokens = 0
    for index, length in enumerate(lengths):
        if not groups or tokens + length > max_tokens or len(groups[-1]) >= max_sequences:
            groups.append([])
            tokens = 0
        groups[-1].append(index)
        tokens += length
    return groups


def _load(spec: LoadSpec) -> tuple[Any, Any, Any, int]:
    """The model, its embedding context, a batch of the context's decode size, and the pooling used."""
    import llama_cpp
    from llama_cpp import _internals

    from rbee.hive.gguf_header import read_metadata
    from rbee.worker import gpu_params

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    pooling = pooling_of(read_metadata(Path(spec.model_path)))
    llama_cpp.llama_backend_init()
    built = gpu_params.of(spec).model_params()  # holds the tensor_split array while loading
    model = _internals.LlamaModel(path_model=spec.model_path, params=built.params, verbose=False)
    threads = spec.threads or max(1, os.cpu_count() or 1)
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = params.n_batch = params.n_ubatch = spec.ctx_size
    params.n_seq_max = min(EMBEDDING_SEQUENCES, llama_cpp.llama_max_parallel_sequences())
    params.kv_unified = True
    params.embeddings = True
    params.pooling_type = pooling
    params.n_threads = params.n_threads_batch = threads
    try:
        context = _internals.LlamaContext(model=model, params=params, verbose=False)
        batch = _internals.LlamaBatch(n_tokens=_batch_tokens(context), embd=0, n_seq_max=1, verbose=False)
    except BaseException:
        model.close()
        raise
    return model, context, batch, pooling


def _batch_tokens(context: Any) -> int:
    """Tokens one decode of `context` takes in one go (llama.cpp may round the context up)."""
    import llama_cpp

    ctx = context.ctx
    return min(llama_cpp.llama_n_ctx(ctx), llama_cpp.llama_n_batch(ctx), llama_cpp.llama_n_ubatch(ctx))


class EmbeddingEngine:
    """A loaded model that embeds token sequences, one request at a time on its own thread."""

    def __init__(self, spec: LoadSpec, faults: Faults) -> None:
        self._spec = spec
        self._faults = faults
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="embedding")
        self._model: Any = None
        self._context: Any = None
        self._batch: Any = None
        self.context_tokens = 0
        """Tokens one input may hold (and one decode batch, all inputs together)."""
        self.sequences = 0
        """Inputs one decode batch holds at most."""
        self.dimensions = 0
        self.vocab_size = 0
        self.pooling = ""
        """The pooling used: `mean`, `cls` or `last`."""

    @classmethod
    async def load(cls, spec: LoadSpec, faults: Faults) -> EmbeddingEngine:
        """Load the model on the engine's thread; return once it is loaded."""
        engine = cls(spec, faults)
        try:
            await asyncio.wrap_future(engine._thread.submit(engine._load))
        except BaseException:
            engine.shutdown()
            raise
        return engine

    def _load(self) -> None:
        import llama_cpp

        self._faults.on_load()
        self._model, self._context, self._batch, pooling = _load(self._spec)
        self.context_tokens = _batch_tokens(self._context)
        self.sequences = llama_cpp.llama_n_seq_max(self._context.ctx)
        self.dimensions = self._model.n_embd()
        self.vocab_size = self._model.n_vocab()
        self.pooling = POOLING_NAMES[llama_cpp.llama_pooling_type(self._context.ctx)]
        log.info("embedding with %s pooling (GGUF pooling %s), %d dimensions",
                 self.pooling, POOLING_NAMES[pooling], self.dimensions)

    def tokenize(self, text: str) -> list[int]:
        """An input's tokens with BOS, special tokens as text (the vocabulary is read-only)."""
        return self._model.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    async def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        """One L2-normalised vector per input, in order (each input fits `context_tokens`)."""
        return await asyncio.wrap_future(self._thread.submit(self._embed, inputs))

    def _embed(self, inputs: list[list[int]]) -> list[list[float]]:
        """Each distinct input is embedded once, so identical inputs get the very same vector."""
        distinct = list(dict.fromkeys(tuple(tokens) for tokens in inputs))
        vectors: dict[tuple[int, ...], list[float]] = {}
        for group in batches([len(tokens) for tokens in distinct], self.context_tokens, self.sequences):
            chosen = [distinct[index] for index in group]
            vectors.update(zip(chosen, self._decode(chosen), strict=True))
        return [vectors[tuple(tokens)] for tokens in inputs]

    def _decode(self, inputs: list[tuple[int, ...]]) -> list[list[float]]:
        """Embed the inputs of one batch, each as its own sequence."""
        import llama_cpp

        self._batch.reset()
        for seq_id, tokens in enumerate(inputs):
            self._batch.add_sequence(tokens, seq_id, True)
        self._context.kv_cache_clear()
        self._context.decode(self._batch)
        ctx = self._context.ctx
        pooled = [llama_cpp.llama_get_embeddings_seq(ctx, seq_id) for seq_id in range(len(inputs))]
        return [unit_float32(np.ctypeslib.as_array(vector, shape=(self.dimensions,))) for vector in pooled]

    def shutdown(self) -> None:
        """Free the context and the model once the embedding running now returns."""
        self._thread.submit(self._free)
        self._thread.shutdown(wait=True)

    def _free(self) -> None:
        for part in (self._batch, self._context, self._model):
            if part is not None:
                part.close()
        self._batch = self._context = self._model = None
