"""Resource preflight: GGUF header reading, memory estimates, refusals."""

from __future__ import annotations

import os
import shutil

import pytest

from rbee.common.errors import ApiError
from rbee.common.tunables import GpuLimits
from rbee.hive import backends, preflight
from rbee.hive.gguf_header import GgufError, read_metadata
from rbee.hive.gpu_fit import GpuShare, Placement
from rbee.hive.gpus import Gpu
from rbee.hive.preflight import GpuPolicy
from rbee.hive.vram_ledger import VramLedger
from rbee.testing.tiny_model import build_tiny_gguf

GIB = 1 << 30


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
    one = preflight.footprint(tiny, 1024, 1)
    two = preflight.footprint(tiny, 1024, 2)
    longer = preflight.footprint(tiny, 4096, 1)
    assert two.ram_bytes() > one.ram_bytes() and longer.ram_bytes() > one.ram_bytes()
    need = preflight.Need(one.ram_bytes(), preflight.LOG_DISK_BYTES, "cpu")
    assert need.vram_bytes == 0 and need.address_space_limit > need.ram_bytes * 4


def test_the_batched_engine_needs_the_weights_once_and_the_simple_engine_once_per_slot(tiny):
    weights = int(tiny.stat().st_size * preflight.WEIGHTS_FACTOR)
    batched = [preflight.footprint(tiny, 1024, n).ram_bytes() for n in (1, 4)]
    simple = [preflight.footprint(tiny, 1024, n, "simple").ram_bytes() for n in (1, 4)]
    assert batched[0] == simple[0]
    assert simple[1] - batched[1] == 3 * weights


def test_the_vram_estimate_is_weights_plus_kv_cache_plus_compute_buffer(tiny):
    shape = preflight.footprint(tiny, 1024, 2)
    every = shape.offloadable_layers
    assert shape.kv_bytes == 2 * 1024 * preflight.kv_bytes_per_token(tiny)
    assert shape.vram_bytes(every) == tiny.stat().st_size + shape.kv_bytes + shape.gpu_fixed_bytes
    assert shape.gpu_fixed_bytes == preflight.GPU_COMPUTE_BYTES + 2 * preflight.COMPUTE_BYTES_PER_SLOT
    assert 0 < shape.vram_bytes(1) < shape.vram_bytes(every - 1) < shape.vram_bytes(every)


def test_layers_on_the_gpu_leave_the_host_only_the_rest(tiny):
    shape = preflight.footprint(tiny, 1024, 1)
    every = shape.offloadable_layers
    on_cpu, half, none_left = shape.ram_bytes(0), shape.ram_bytes(every // 2), shape.ram_bytes(every)
    assert on_cpu > half > none_left
    assert none_left == preflight.BASE_BYTES + preflight.COMPUTE_BYTES_PER_SLOT


def test_a_gpu_need_has_no_address_space_limit():
    placement = Placement((GpuShare(0, "GPU-a", 1),), 3)
    need = preflight.Need(1 << 30, 1, "cuda", placement, all_layers=5)
    assert need.address_space_limit is None and need.device == 0 and need.partial


def _ask(path, backend="auto", **fields) -> preflight.Ask:
    return preflight.Ask("w-1", "tiny", path, 1024, 1, backend, **fields)


def _gpus(*free: int, total: int = 80 * GIB) -> VramLedger:
    devices = [Gpu(i, f"GPU-{i}", "Test GPU", total, f, total - f, 0.0, 40.0, 50.0)
               for i, f in enumerate(free)]
    return VramLedger(GpuLimits(reserve_mib=0), lambda: devices)


@pytest.fixture
def cuda_compiled(monkeypatch):
    monkeypatch.setattr(backends, "compiled", lambda name: name == "cuda")


def test_auto_on_a_node_without_a_gpu_runs_on_the_cpu(tiny, tmp_path):
    need = preflight.plan(_ask(tiny), GpuPolicy(), VramLedger(GpuLimits(), list), tmp_path)
    assert (need.backend, need.device, need.gpus) == ("cpu", None, ())
    assert need.address_space_limit is not None


def test_an_explicit_cuda_spawn_on_an_engine_without_cuda_is_refused(tiny, tmp_path):
    if backends.compiled("cuda"):
        pytest.skip("this machine has a CUDA build")
    with pytest.raises(ApiError) as caught:
        preflight.plan(_ask(tiny, "cuda"), GpuPolicy(), _gpus(40 * GIB), tmp_path)
    assert (caught.value.status, caught.value.code) == (400, "BACKEND_UNAVAILABLE")
    assert caught.value.details == {"backend": "cuda", "compiled": False}


@pytest.mark.parametrize(("node", "asked"), [("cpu", "cuda"), ("cuda", "cpu"), ("cpu", "metal")])
def test_a_node_policy_refuses_any_other_backend(tiny, tmp_path, node, asked):
    with pytest.raises(ApiError) as caught:
        preflight.plan(_ask(tiny, asked), GpuPolicy(backend=node), _gpus(40 * GIB), tmp_path)
    assert (caught.value.status, caught.value.code) == (400, "BACKEND_UNAVAILABLE")
    assert caught.value.details == {"backend": asked, "node_backend": node}


def test_a_cpu_node_runs_auto_on_the_cpu_even_with_a_gpu(tiny, tmp_path, cuda_compiled):
    ledger = _gpus(40 * GIB)
    assert preflight.plan(_ask(tiny), GpuPolicy(backend="cpu"), ledger, tmp_path).backend == "cpu"
    assert ledger.rooms()[0].booked_bytes == 0


def test_auto_with_a_usable_gpu_runs_on_cuda_and_books_it(tiny, tmp_path, cuda_compiled):
    ledger = _gpus(10 * GIB, 40 * GIB)
    need = preflight.plan(_ask(tiny), GpuPolicy(), ledger, tmp_path)
    assert (need.backend, need.device, need.split_mode, need.partial) == ("cuda", 1, "none", False)
    assert need.address_space_limit is None
    assert [room.booked_bytes for room in ledger.rooms()] == [0, need.vram_bytes]


def test_auto_with_no_room_on_any_gpu_falls_back_to_the_cpu_but_cuda_is_507(tiny, tmp_path, cuda_compiled):
    ledger = _gpus(100 * 1024 * 1024)
    assert preflight.plan(_ask(tiny), GpuPolicy(), ledger, tmp_path).backend == "cpu"
    with pytest.raises(ApiError) as caught:
        preflight.plan(_ask(tiny, "cuda"), GpuPolicy(), ledger, tmp_path)
    err = caught.value
    assert (err.status, err.code, err.details["device"]) == (507, "INSUFFICIENT_VRAM", 0)
    assert err.details["required_bytes"] > err.details["available_bytes"] == 100 * 1024 * 1024


def test_an_explicit_cuda_spawn_with_no_gpu_visible_is_refused(tiny, tmp_path, cuda_compiled):
    with pytest.raises(ApiError) as caught:
        preflight.plan(_ask(tiny, "cuda"), GpuPolicy(), VramLedger(GpuLimits(), list), tmp_path)
    assert (caught.value.status, caught.value.code) == (400, "BACKEND_UNAVAILABLE")


def test_a_requested_gpu_that_does_not_exist_is_refused(tiny, tmp_path, cuda_compiled):
    with pytest.raises(ApiError) as caught:
        preflight.plan(_ask(tiny, "cuda", device=5), GpuPolicy(), _gpus(40 * GIB), tmp_path)
    assert caught.value.code == "BACKEND_UNAVAILABLE" and caught.value.details["device"] == 5


def test_the_model_gpu_layers_override_is_honoured(tiny, tmp_path, cuda_compiled):
    policy = GpuPolicy(model_gpu_layers={"tiny": 1})
    need = preflight.plan(_ask(tiny, "cuda"), policy, _gpus(40 * GIB), tmp_path)
    assert need.gpu_layers == 1 and need.partial


def test_a_spawns_own_gpu_layers_win_over_the_nodes_model_gpu_layers(tiny, tmp_path, cuda_compiled):
    policy = GpuPolicy(model_gpu_layers={"tiny": 2})
    need = preflight.plan(_ask(tiny, "cuda", gpu_layers=1), policy, _gpus(40 * GIB), tmp_path)
    assert need.gpu_layers == 1 and need.partial


def test_a_refusal_for_ram_releases_the_gpu_booking(tiny, tmp_path, cuda_compiled):
    huge = tmp_path / "huge.gguf"
    shutil.copyfile(tiny, huge)
    os.truncate(huge, 1 << 40)
    ledger = _gpus(400 * GIB, total=2048 * GIB)  # one of the 3 layers (341 GiB each) fits
    with pytest.raises(ApiError) as caught:
        preflight.plan(_ask(huge, "cuda"), GpuPolicy(), ledger, tmp_path)
    assert caught.value.code == "INSUFFICIENT_RAM"
    assert ledger.rooms()[0].booked_bytes == 0


def test_a_model_larger_than_memory_is_refused_with_figures(tiny, tmp_path):
    huge = tmp_path / "huge.gguf"
    shutil.copyfile(tiny, huge)
    os.truncate(huge, 1 << 40)
    with pytest.raises(ApiError) as caught:
        preflight.plan(_ask(huge, "cpu"), GpuPolicy(), VramLedger(GpuLimits(), list), tmp_path)
    assert caught.value.status == 507 and caught.value.code == "INSUFFICIENT_RAM"
    assert caught.value.details["required_bytes"] > caught.value.details["available_bytes"]


def test_the_resources_list_each_gpu_with_its_bookings(tmp_path):
    ledger = _gpus(40 * GIB)
    ledger.book("w-1", lambda rooms: Placement((GpuShare(0, "GPU-0", 3 * GIB),), 4))
    [listed] = preflight.resources(tmp_path, ledger.rooms())["gpus"]
    assert listed["uuid"] == "GPU-0" and listed["temperature_c"] == 40.0
    assert (listed["booked_bytes"], listed["available_bytes"]) == (3 * GIB, 37 * GIB)
