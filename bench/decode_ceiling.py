"""Decode-step ceiling: a bare loop over one llama context with rbee's context parameters, B
sequences of one token per step, no HTTP and no token rules, in the order rbee's GPU engine
uses (wait for the decode, sample, stage, launch).

Per step it prints the wait for the GPU, the sampling, the staging and the `llama_decode` call,
once without sampling (the GPU's own step, what llama-batched-bench measures) and once with
rbee's per-sequence CPU sampler chain spread over `batch_engine.SAMPLING_THREADS` threads, with
tokens/s and the ratio of the two. The second figure is the most the batched engine can reach
with CPU sampling, whatever the rest of its step costs.

Run (on a GPU machine): python3 bench/decode_ceiling.py --model M.gguf --streams 64
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import llama_cpp
from llama_cpp import _internals

from rbee.common.wire_requests import SamplingParams
from rbee.worker import batch_engine, gpu_params
from rbee.worker.generation import LoadSpec
from rbee.worker.gpu_params import ALL_LAYERS

PROMPT_TOKENS = 20
WARM_UP_STEPS = 8


def _context(model: Any, streams: int, ctx: int) -> Any:
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = ctx * streams
    params.n_seq_max = streams
    params.n_batch = params.n_ubatch = batch_engine.BATCH_TOKENS
    params.n_threads = params.n_threads_batch = batch_engine.GPU_THREADS
    params.kv_unified = False
    return _internals.LlamaContext(model=model, params=params, verbose=False)


def _prefill(ctx: Any, batch: Any, streams: int) -> list[int]:
    """Each sequence's prompt in chunks that fit the batch, then one decoded token each;
    returns each sequence's batch index of the last step."""
    per_batch = batch_engine.BATCH_TOKENS // PROMPT_TOKENS
    for start in range(0, streams, per_batch):
        for seq in range(start, min(streams, start + per_batch)):
            batch.add(list(range(100, 100 + PROMPT_TOKENS)), 0, seq, True)
        batch.write()
        assert llama_cpp.llama_decode(ctx, batch.batch) == 0
    index = [batch.add([7], PROMPT_TOKENS, seq, True) for seq in range(streams)]
    batch.write()
    assert llama_cpp.llama_decode(ctx, batch.batch) == 0
    return index


def run(model: Any, streams: int, steps: int, ctx_size: int, sample: bool) -> dict[str, Any]:
    """`steps` measured steps (after a warm-up) of `streams` sequences."""
    context = _context(model, streams, ctx_size)
    ctx = context.ctx
    batch = batch_engine._Batch(batch_engine.BATCH_TOKENS)
    params = SamplingParams(temperature=0.7, seed=1)
    samplers = [batch_engine._sampler(params.model_copy(update={"seed": 1000 + i})) for i in range(streams)]
    index = _prefill(ctx, batch, streams)
    position = PROMPT_TOKENS + 1
    parts = min(batch_engine.SAMPLING_THREADS, streams)
    pool = ThreadPoolExecutor(max(1, parts - 1))
    sample_one = llama_cpp.llama_sampler_sample

    def sample_part(first: int) -> list[int]:
        return [sample_one(samplers[i].sampler, ctx, index[i]) for i in range(first, streams, parts)]

    spent = {"wait": 0.0, "sample": 0.0, "stage": 0.0, "launch": 0.0}
    tokens = [7] * streams
    vocab_size = llama_cpp.llama_vocab_n_tokens(model.vocab)
    began = 0.0
    for step in range(WARM_UP_STEPS + steps):
        if step == WARM_UP_STEPS:
            began = time.perf_counter()
        t0 = time.perf_counter()
        llama_cpp.llama_synchronize(ctx)
        t1 = time.perf_counter()
        if sample:
            llama_cpp.llama_get_logits_ith(ctx, index[0])
            futures = [pool.submit(sample_part, k) for k in range(1, parts)]
            first = sample_part(0)
            wait(futures)
            tokens[0::parts] = first
            for k, future in enumerate(futures, start=1):
                tokens[k::parts] = future.result()
        else:
            tokens = [(t * 31 + 7) % (vocab_size - 10) + 10 for t in tokens]
        t2 = time.perf_counter()
        index = [batch.add([tokens[i]], position, i, True) for i in range(streams)]
        position += 1
        batch.write()
        t3 = time.perf_counter()
        assert llama_cpp.llama_decode(ctx, batch.batch) == 0
        t4 = time.perf_counter()
        if step >= WARM_UP_STEPS:
            for name, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                spent[name] += seconds
    llama_cpp.llama_synchronize(ctx)
    wall = time.perf_counter() - began
    pool.shutdown()
    for sampler in samplers:
        sampler.close()
    context.close()
    return {"streams": streams, "sampling": sample,
            **{f"{name}_ms": round(1000 * seconds / steps, 3) for name, seconds in spent.items()},
            "step_ms": round(1000 * wall / steps, 3), "tokens_per_s": round(streams * steps / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--steps", type=int, default=64, help="measured steps")
    parser.add_argument("--ctx", type=int, default=1024, help="context tokens per sequence")
    args = parser.parse_args()
    llama_cpp.llama_backend_init()
    spec = LoadSpec(args.model, args.streams, args.ctx, None, gpu_layers=ALL_LAYERS)
    built = gpu_params.of(spec).model_params()  # holds the tensor_split array while loading
    model = _internals.LlamaModel(path_model=args.model, params=built.params, verbose=False)
    bare = run(model, args.streams, args.steps, args.ctx, sample=False)
    sampled = run(model, args.streams, args.steps, args.ctx, sample=True)
    for figures in (bare, sampled):
        print(json.dumps(figures))
    share = sampled["tokens_per_s"] / bare["tokens_per_s"]
    print(f"{args.streams} streams: GPU step {bare['step_ms']} ms ({bare['tokens_per_s']} tokens/s); "
          f"with rbee's CPU sampling {sampled['step_ms']} ms ({sampled['tokens_per_s']} tokens/s) "
          f"= {share:.2f}× the GPU's")
    model.close()


if __name__ == "__main__":
    main()
