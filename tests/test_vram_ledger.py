"""The VRAM ledger and the GPU placement on GPUs the tests describe (no NVML): bookings and their
release, spawns racing for the last memory, budget, reserve, temperature, splits and partial
offload."""

import threading
import time
from dataclasses import replace

import pytest

from rbee.common.errors import ApiError
from rbee.common.tunables import GpuLimits
from rbee.hive.gpu_fit import MIB, place
from rbee.hive.gpus import Gpu
from rbee.hive.preflight import Footprint
from rbee.hive.vram_ledger import VramLedger

GIB = 1024 * MIB
MODEL = Footprint(file_bytes=9 * GIB, layers=8, kv_bytes=800 * MIB, slots=1)
"""9 offloadable layers of 1 GiB weights, 100 MiB of KV cache per repeating layer."""
WHOLE = MODEL.vram_bytes(MODEL.offloadable_layers)
NO_RESERVE = GpuLimits(reserve_mib=0)


def gpu(index: int, free: int, total: int = 80 * GIB, temperature: float | None = 40.0) -> Gpu:
    return Gpu(index, f"GPU-{index:04d}", "Test GPU", total, free, total - free, 0.0, temperature, 100.0)


def ledger(*gpus: Gpu, limits: GpuLimits = NO_RESERVE) -> VramLedger:
    return VramLedger(limits, lambda: list(gpus))


def choose(**options):
    return lambda rooms: place(MODEL, rooms, **options)


def test_the_whole_model_needs_its_weights_kv_cache_and_compute_buffer():
    assert MODEL.gpu_fixed_bytes + 9 * GIB + 800 * MIB == WHOLE
    assert MODEL.vram_bytes(0) == 0 and MODEL.ram_bytes(MODEL.offloadable_layers) < MODEL.ram_bytes(0)


def test_a_booking_takes_its_memory_from_the_gpu_until_it_is_released():
    book = ledger(gpu(0, 40 * GIB))
    placement = book.book("w-1", choose())
    [room] = book.rooms()
    assert [(s.index, s.bytes) for s in placement.shares] == [(0, WHOLE)]
    assert placement.gpu_layers == MODEL.offloadable_layers and placement.tensor_split is None
    assert (room.booked_bytes, room.available_bytes) == (WHOLE, 40 * GIB - WHOLE)
    book.release("w-1")
    assert (book.rooms()[0].booked_bytes, book.rooms()[0].available_bytes) == (0, 40 * GIB)


def test_a_loaded_workers_memory_is_counted_by_nvml_not_twice():
    book = ledger(gpu(0, 40 * GIB, total=40 * GIB))
    book.book("w-1", choose())
    book.loaded("w-1")
    # NVML's free still says 40 GiB (the fake does not change): only the budget side counts it
    assert book.rooms()[0].available_bytes == 40 * GIB - WHOLE
    book.loading("w-1")
    assert book.rooms()[0].available_bytes == 40 * GIB - WHOLE


def test_the_next_worker_goes_to_the_gpu_with_the_most_room():
    book = ledger(gpu(0, 30 * GIB), gpu(1, 25 * GIB))
    first = book.book("w-1", choose())
    second = book.book("w-2", choose())
    assert (first.shares[0].index, second.shares[0].index) == (0, 1)


def _race(book: VramLedger) -> list[object]:
    """Two spawns at once, each choosing slowly: what each got (a placement or the error)."""
    barrier = threading.Barrier(2)
    results: list[object] = [None, None]

    def slow_choice(rooms):
        time.sleep(0.05)
        return place(MODEL, rooms)

    def spawn(slot: int) -> None:
        barrier.wait()
        try:
            results[slot] = book.book(f"w-{slot}", slow_choice)
        except ApiError as err:
            results[slot] = err

    threads = [threading.Thread(target=spawn, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_two_spawns_racing_for_the_last_memory_one_wins_the_other_gets_507():
    results = _race(ledger(gpu(0, WHOLE + GIB // 2, total=WHOLE + GIB // 2)))
    errors = [r for r in results if isinstance(r, ApiError)]
    won = [r for r in results if not isinstance(r, ApiError)]
    assert len(won) == 1 and won[0].gpu_layers == MODEL.offloadable_layers
    # the loser may not even get a partial offload: the winner's loading booking is not in NVML's free
    assert len(errors) == 1 and (errors[0].status, errors[0].code) == (507, "INSUFFICIENT_VRAM")


def test_two_spawns_racing_on_two_gpus_get_one_each():
    results = _race(ledger(gpu(0, WHOLE + GIB), gpu(1, WHOLE + GIB)))
    assert sorted(r.shares[0].index for r in results) == [0, 1]


def test_the_budget_caps_what_rbee_books_on_a_gpu():
    book = ledger(gpu(0, 80 * GIB), limits=GpuLimits(reserve_mib=0, vram_budget_mib=12 * 1024))
    book.book("w-1", choose())
    assert book.rooms()[0].available_bytes == 12 * GIB - WHOLE
    second = book.book("w-2", choose())
    assert 0 < second.gpu_layers < MODEL.offloadable_layers
    assert second.vram_bytes <= 12 * GIB - WHOLE


def test_the_reserve_stays_free_on_every_gpu():
    book = ledger(gpu(0, 20 * GIB), limits=GpuLimits(reserve_mib=1024))
    assert book.rooms()[0].available_bytes == 19 * GIB


def test_a_gpu_at_the_temperature_limit_takes_no_new_worker():
    limits = replace(NO_RESERVE, max_temperature_c=85)
    book = ledger(gpu(0, 70 * GIB, temperature=85.0), gpu(1, 20 * GIB, temperature=60.0), limits=limits)
    assert [room.available_bytes for room in book.rooms()] == [0, 20 * GIB]
    assert book.book("w-1", choose()).shares[0].index == 1
    with pytest.raises(ApiError) as refused:
        ledger(gpu(0, 70 * GIB, temperature=95.0), limits=limits).book("w-2", choose())
    assert refused.value.code == "INSUFFICIENT_VRAM"


def test_a_model_too_big_for_one_gpu_is_split_in_proportion_to_each_gpus_room():
    book = ledger(gpu(0, 8 * GIB), gpu(1, 4 * GIB))
    placement = book.book("w-1", choose())
    fixed = MODEL.gpu_fixed_bytes
    assert [s.index for s in placement.shares] == [0, 1]
    assert placement.gpu_layers == MODEL.offloadable_layers
    spare = [8 * GIB - fixed, 4 * GIB - fixed]
    assert placement.tensor_split == tuple(round(s / sum(spare), 4) for s in spare)
    assert all(room.booked_bytes <= room.gpu.free_bytes for room in book.rooms())
    assert placement.vram_bytes == pytest.approx(WHOLE + fixed, abs=2)


def test_a_split_uses_only_the_configured_gpus():
    rooms = ledger(gpu(0, 8 * GIB), gpu(1, 4 * GIB), gpu(2, 4 * GIB)).rooms()
    placement = place(MODEL, rooms, split_gpus={"GPU-0002", "0"})
    assert [s.uuid for s in placement.shares] == ["GPU-0000", "GPU-0002"]


def test_a_model_too_big_for_every_split_gets_as_many_layers_as_fit_on_the_best_gpu():
    rooms = ledger(gpu(0, 5 * GIB), gpu(1, GIB // 2)).rooms()
    placement = place(MODEL, rooms)
    layers = placement.gpu_layers
    assert [s.index for s in placement.shares] == [0]
    assert MODEL.vram_bytes(layers) <= 5 * GIB < MODEL.vram_bytes(layers + 1)
    assert layers == 4 and placement.vram_bytes == MODEL.vram_bytes(4)


def test_no_room_for_even_one_layer_is_507_with_the_figures():
    rooms = ledger(gpu(3, GIB)).rooms()
    with pytest.raises(ApiError) as refused:
        place(MODEL, rooms)
    err = refused.value
    assert (err.status, err.code) == (507, "INSUFFICIENT_VRAM")
    assert err.details == {"required_bytes": MODEL.vram_bytes(1), "available_bytes": GIB, "device": 3,
                           "gpu_layers": 1}


def test_a_fixed_layer_count_is_kept_or_refused_never_reduced():
    rooms = ledger(gpu(0, 5 * GIB)).rooms()
    assert place(MODEL, rooms, fixed_layers=3).gpu_layers == 3
    with pytest.raises(ApiError) as refused:
        place(MODEL, rooms, fixed_layers=6)
    assert refused.value.code == "INSUFFICIENT_VRAM"
    assert refused.value.details["required_bytes"] == MODEL.vram_bytes(6)


def test_a_requested_device_is_the_only_gpu_considered():
    rooms = ledger(gpu(0, 40 * GIB), gpu(1, 20 * GIB)).rooms()
    assert place(MODEL, rooms, device=1).shares[0].index == 1


def _gpu(index: int, uuid: str):
    from rbee.hive.gpus import Gpu

    return Gpu(index, uuid, "H200", 10, 10, 0)


def test_the_hive_uses_only_the_gpus_its_visible_devices_variables_name():
    from rbee.hive.gpus import allowed

    first, second = _gpu(0, "GPU-a"), _gpu(1, "GPU-b")
    assert allowed(first, {}) and allowed(second, {"NVIDIA_VISIBLE_DEVICES": "all"})
    nomad = {"NVIDIA_VISIBLE_DEVICES": "GPU-b"}
    assert (allowed(first, nomad), allowed(second, nomad)) == (False, True)
    by_index = {"CUDA_VISIBLE_DEVICES": "0"}
    assert (allowed(first, by_index), allowed(second, by_index)) == (True, False)
    assert not allowed(first, {"CUDA_VISIBLE_DEVICES": ""})
    assert not allowed(first, {"NVIDIA_VISIBLE_DEVICES": "none"})
