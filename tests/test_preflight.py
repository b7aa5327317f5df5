"""Resource preflight: GGUF header reading, memory estimates, refusals."""

from __future__ import annotations

import os
import shutil

import pytest

from rbee.common.errors import ApiError
from rbee.hive import preflight
from rbee.hive.gguf_header import GgufError, read_metadata
from rbee.testing.tiny_model import build_tiny_gguf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_gguf(tmp_path_factory.mktemp("m") / "tiny.gguf")


def test_the_header_reader_returns_scalars_and_skips_arrays(tiny):
    meta = read_metadata(tiny)
    arch = meta["general.architecture"]
    assert arch == "llama"
    assert meta[f"{arch}.block_count"] >= 1 and meta[f"{arch}.embedding_length"] >= 1
    assert "tokenizer.ggml.tokens" not in meta


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"NOPE" + bytes(64))
    with pytest.raises(GgufError):
        read_metadata(path)


def test_a_truncated_header_is_refused(tiny, tmp_path):
    path = tmp_path / "cut.gguf"
    path.write_bytes(tiny.read_bytes()[:40])
    with pytest.raises(GgufError):
        read_metadata(path)


def test_the_kv_cache_follows_layers_heads_and_lengths(tiny):
    meta = read_metadata(tiny)
    arch = meta["general.architecture"]
    heads = meta[f"{arch}.attention.head_count"]
    heads_kv = meta.get(f"{arch}.attention.head_count_kv", heads)
    head_dim = meta[f"{arch}.embedding_length"] // heads
    expected = meta[f"{arch}.block_count"] * heads_kv * 2 * head_dim * 2
    assert preflight.kv_bytes_per_token(tiny) == expected


def test_the_ram_need_grows_with_slots_and_context(tiny):
    one = preflight.estimate(tiny, 1024, 1, "cpu", None)
    two = preflight.estimate(tiny, 1024, 2, "cpu", None)
    longer = preflight.estimate(tiny, 4096, 1, "cpu", None)
    assert two.ram_bytes > one.ram_bytes and longer.ram_bytes > one.ram_bytes
    assert one.vram_bytes == 0 and one.address_space_limit > one.ram_bytes * 4


def test_the_batched_engine_needs_the_weights_once_and_the_simple_engine_once_per_slot(tiny):
    weights = int(tiny.stat().st_size * preflight.WEIGHTS_FACTOR)
    batched = [preflight.estimate(tiny, 1024, n, "cpu", None).ram_bytes for n in (1, 4)]
    simple = [preflight.estimate(tiny, 1024, n, "cpu", None, "simple").ram_bytes for n in (1, 4)]
    assert batched[0] == simple[0]
    assert simple[1] - batched[1] == 3 * weights


def test_a_gpu_need_moves_the_per_slot_part_to_vram(tiny):
    need = preflight.estimate(tiny, 1024, 2, "cuda", 1)
    assert need.vram_bytes > 0 and need.device == 1


def test_a_model_larger_than_memory_is_refused_with_figures(tiny, tmp_path):
    huge = tmp_path / "huge.gguf"
    shutil.copyfile(tiny, huge)
    os.truncate(huge, 1 << 40)
    with pytest.raises(ApiError) as caught:
        preflight.check(preflight.estimate(huge, 1024, 1, "cpu", None), tmp_path)
    assert caught.value.status == 507 and caught.value.code == "INSUFFICIENT_RAM"
    assert caught.value.details["required_bytes"] > caught.value.details["available_bytes"]


def test_a_backend_missing_from_the_engine_is_refused(tiny, tmp_path):
    from rbee.hive import backends

    if backends.get("cuda").available:
        pytest.skip("this machine has a usable CUDA build")
    with pytest.raises(ApiError) as caught:
        preflight.check(preflight.estimate(tiny, 1024, 1, "cuda", None), tmp_path)
    assert caught.value.status == 400 and caught.value.code == "BACKEND_UNAVAILABLE"


def test_a_small_model_passes_the_preflight(tiny, tmp_path):
    need = preflight.check(preflight.estimate(tiny, 1024, 1, "cpu", None), tmp_path)
    assert need.backend == "cpu" and need.device is None
