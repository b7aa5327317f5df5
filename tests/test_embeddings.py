"""`/v1/embeddings` on its own: the request bodies, the OpenAI encodings, the pooling choice,
packing inputs into decode batches, normalisation, the worker's input checks, and placement
keeping embedding workers apart from generation workers of the same model."""

import asyncio
import base64
import math
import struct
import time

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from fake_peers import FakeHive, serve
from test_placement import MODEL, queen

from rbee.common.deadlines import parse as parse_deadline
from rbee.common.embedding_wire import EmbeddingInference, EmbeddingResult
from rbee.common.errors import ApiError
from rbee.common.validation import MAX_EMBEDDING_INPUTS
from rbee.common.wire_requests import SpawnRequest, WorkerReport
from rbee.queen.api.embedding_requests import EmbeddingRequest
from rbee.queen.api.embeddings import encode, response
from rbee.queen.routing.embedding_dispatch import EmbeddingDispatcher
from rbee.queen.routing.worker_registry import WorkerRegistry, pool_of
from rbee.worker.embedding_engine import batches, pooling_of, unit_float32
from rbee.worker.embedding_service import EmbeddingService
from rbee.worker.slots import SlotPool


def refusal(body: dict) -> ApiError:
    with pytest.raises(ApiError) as err:
        EmbeddingRequest.parse({"model": "m", **body})
    return err.value


@pytest.mark.parametrize(("given", "inputs"), [
    ("one text", ["one text"]),
    (["a", "b"], ["a", "b"]),
    ([1, 2, 3], [[1, 2, 3]]),
    ([[1, 2], [3]], [[1, 2], [3]]),
])
def test_every_openai_input_shape_becomes_a_list_of_inputs(given, inputs):
    assert EmbeddingRequest.parse({"model": "m", "input": given}).input == inputs


@pytest.mark.parametrize("given", [
    [], "", ["text", [1, 2]], [[1], "text"], [[-1]], [[]], [[True]], [1.5], {"text": "a"}, None,
    ["a"] * (MAX_EMBEDDING_INPUTS + 1), ["bad\x00text"],
])
def test_bad_input_is_refused_naming_the_input_field(given):
    err = refusal({"input": given})
    assert (err.status, err.code, err.details["field"]) == (400, "INVALID_REQUEST", "input")


@pytest.mark.parametrize(("field", "value"), [
    ("encoding_format", "hex"), ("dimensions", 0), ("dimensions", "64"), ("user", 5), ("backend", "tpu"),
])
def test_a_bad_option_is_refused_naming_its_field(field, value):
    err = refusal({"input": "a", field: value})
    assert (err.status, err.details["field"]) == (400, field)


def test_encoding_defaults_to_float_and_user_is_accepted_but_not_sent_to_the_worker():
    request = EmbeddingRequest.parse({"model": "m", "input": "a", "encoding_format": None, "user": "u-1"})
    assert request.encoding_format == "float"
    assert request.worker_body() == {"input": ["a"], "dimensions": None}


def test_base64_is_the_little_endian_float32_bytes_of_the_vector():
    assert base64.b64decode(encode([1.0, -2.0], "base64")) == b"\x00\x00\x80\x3f\x00\x00\x00\xc0"
    assert encode([1.0, -2.0], "float") == [1.0, -2.0]


def test_the_response_has_openai_shape_with_one_entry_per_vector_in_order():
    result = EmbeddingResult(embeddings=[[1.0, 0.0], [0.0, 1.0]], prompt_tokens=7)
    answer = response(result, "m", "float")
    assert answer == {
        "object": "list", "model": "m", "usage": {"prompt_tokens": 7, "total_tokens": 7},
        "data": [{"object": "embedding", "index": 0, "embedding": [1.0, 0.0]},
                 {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]}],
    }


@pytest.mark.parametrize(("metadata", "pooling"), [
    ({"general.architecture": "llama"}, 1),
    ({"general.architecture": "bert", "bert.pooling_type": 0}, 1),
    ({"general.architecture": "bert", "bert.pooling_type": -1}, 1),
    ({"general.architecture": "bert", "bert.pooling_type": 1}, 1),
    ({"general.architecture": "bert", "bert.pooling_type": 2}, 2),
    ({"general.architecture": "qwen3", "qwen3.pooling_type": 3}, 3),
])
def test_the_pooling_is_the_ggufs_own_and_mean_when_it_names_none(metadata, pooling):
    assert pooling_of(metadata) == pooling


@pytest.mark.parametrize("value", [4, 9])
def test_a_reranker_or_an_unknown_pooling_is_refused(value):
    with pytest.raises(ValueError):
        pooling_of({"general.architecture": "bert", "bert.pooling_type": value})


def test_inputs_are_packed_in_order_into_batches_within_the_token_and_sequence_limits():
    lengths = [3, 4, 2, 5, 1, 1, 1]
    groups = batches(lengths, max_tokens=8, max_sequences=3)
    assert [index for group in groups for index in group] == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in group) <= 8 and len(group) <= 3 for group in groups)
    assert groups == [[0, 1], [2, 3, 4], [5, 6]]


def test_a_normalised_vector_has_unit_norm_and_float32_values():
    vector = unit_float32(np.array([3.0, 4.0, 12.0], dtype=np.float32))
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-6)
    assert list(struct.unpack("<3f", struct.pack("<3f", *vector))) == vector
    assert unit_float32(np.zeros(2, dtype=np.float32)) == [0.0, 0.0]


class FakeEmbedder:
    """The engine's surface the service uses: a vocabulary, a context, and vectors."""

    context_tokens = 8
    dimensions = 2
    vocab_size = 100

    def tokenize(self, text: str) -> list[int]:
        return [1] + [ord(c) % 50 for c in text]

    async def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        return [[1.0, 0.0] for _ in inputs]


def service_refusal(body: dict) -> ApiError:
    service = EmbeddingService("w-1", SlotPool.of_size(1), FakeEmbedder())  # type: ignore[arg-type]
    with pytest.raises(ApiError) as err:
        asyncio.run(service.embed(body))
    return err.value


def test_an_input_longer_than_the_context_is_refused_with_its_index_and_both_counts():
    err = service_refusal({"input": ["ok", "much too long"]})
    assert (err.status, err.code) == (400, "INPUT_TOO_LONG")
    assert err.details == {"field": "input", "index": 1, "input_tokens": 14, "context_tokens": 8}


def test_a_token_id_outside_the_vocabulary_is_refused_naming_the_input():
    err = service_refusal({"input": [[1, 100]]})
    assert (err.code, err.details["field"]) == ("INVALID_REQUEST", "input")


def test_dimensions_other_than_the_models_are_refused_naming_the_field():
    err = service_refusal({"input": "a", "dimensions": 3})
    assert (err.code, err.details["field"]) == ("INVALID_REQUEST", "dimensions")


def test_an_accepted_request_counts_every_inputs_tokens_and_frees_its_slot():
    service = EmbeddingService("w-1", SlotPool.of_size(1), FakeEmbedder())  # type: ignore[arg-type]
    result = asyncio.run(service.embed({"input": ["ab", "c"], "dimensions": 2}))
    assert (result.prompt_tokens, len(result.embeddings), service.pool.free) == (5, 2, 1)


def test_the_spawn_request_and_the_heartbeat_carry_the_worker_kind():
    assert SpawnRequest.parse({"model": "m", "embedding": True}).embedding is True
    assert SpawnRequest.parse({"model": "m"}).embedding is False
    report = {"worker_id": "w", "model": "m", "url": "http://h:1", "slots": 1, "state": "idle"}
    assert WorkerReport.parse({**report, "embedding": True}).embedding is True
    assert EmbeddingInference.parse({"input": "a"}).input == ["a"]


def test_the_registry_never_picks_a_worker_of_the_other_kind():
    registry = WorkerRegistry()
    worker = {"model": "m", "slots": 1, "state": "idle"}
    registry.sync("http://hive", [
        {**worker, "worker_id": "gen", "url": "http://w1"},
        {**worker, "worker_id": "emb", "url": "http://w2", "embedding": True},
    ])
    assert registry.pick("m").worker_id == "gen"
    assert registry.pick("m", embedding=True).worker_id == "emb"
    registry.acquire("emb")
    assert registry.pick("m", embedding=True) is None
    assert pool_of("m", True) != pool_of("m", False) == "m"


@pytest.mark.parametrize("embedding", [True, False])
def test_a_request_spawns_a_worker_of_its_kind_beside_an_idle_one_of_the_other_kind(tmp_path, embedding):
    async def scenario():
        hive = await FakeHive().start()
        try:
            async with queen(tmp_path, local=hive) as q:
                other = hive.add_worker(MODEL, "idle", embedding=not embedding)
                async with q.placement.worker_for(MODEL, embedding=embedding) as worker:
                    return worker, other, hive.spawns
        finally:
            await hive.close()

    worker, other, spawns = asyncio.run(scenario())
    assert worker.worker_id != other["worker_id"] and worker.embedding is embedding
    assert [spawn["embedding"] for spawn in spawns] == [embedding]


def test_a_draining_queen_refuses_new_embedding_requests_and_waits_for_the_running_one(tmp_path):
    release = asyncio.Event()

    async def slow_worker(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"embeddings": [[1.0]], "prompt_tokens": 2})

    async def scenario():
        app = web.Application()
        app.router.add_post("/v1/embeddings", slow_worker)
        runner, worker_url = await serve(app)
        hive = await FakeHive(worker_url).start()
        try:
            async with queen(tmp_path, local=hive) as q, aiohttp.ClientSession() as session:
                hive.add_worker(MODEL, "idle", embedding=True)
                embeddings = EmbeddingDispatcher(q.placement, session, dict)
                deadline = parse_deadline(str(int((time.time() + 30) * 1000)))
                body = {"input": ["a"]}
                running = asyncio.create_task(embeddings.embed(MODEL, body, "auto", deadline, "c"))
                while not embeddings.running:
                    await asyncio.sleep(0.01)
                drained = asyncio.create_task(embeddings.drain(10))
                await asyncio.sleep(0.05)
                with pytest.raises(ApiError) as refused:
                    await embeddings.embed(MODEL, {"input": ["b"]}, "auto", deadline, "c")
                drained_early = drained.done()
                release.set()
                await drained
                return refused.value, drained_early, await running
        finally:
            await hive.close()
            await runner.cleanup()

    refused, drained_early, result = asyncio.run(scenario())
    assert (refused.status, refused.code) == (503, "DRAINING")
    assert not drained_early
    assert result.embeddings == [[1.0]]
