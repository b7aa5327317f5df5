"""Eviction's choices: least recently used idle workers first, as few as make the spawn fit, none
when all of them would not; what a trial preflight counts as freed (RAM budget, VRAM bookings);
and the last look at a worker before it is stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from rbee.common.errors import ApiError
from rbee.common.tunables import GpuLimits
from rbee.hive import preflight
from rbee.hive.eviction import Candidate, least_recently_used, still_idle
from rbee.hive.gpu_fit import MIB, place
from rbee.hive.gpus import Gpu
from rbee.hive.preflight import Ask, Footprint, GpuPolicy, HostRoom
from rbee.hive.vram_ledger import VramLedger
from rbee.testing.tiny_model import build_tiny_gguf

GIB = 1024 * MIB
MODEL = Footprint(file_bytes=9 * GIB, layers=8, kv_bytes=800 * MIB, slots=1)
WHOLE = MODEL.vram_bytes(MODEL.offloadable_layers)


def _candidates() -> list[Candidate]:
    return [Candidate("w-new", 30.0, 100), Candidate("w-old", 10.0, 100), Candidate("w-mid", 20.0, 100)]


def test_the_least_recently_used_idle_worker_goes_first_and_alone_when_it_is_enough() -> None:
    tried: list[frozenset[str]] = []

    def fits(gone: frozenset[str]) -> bool:
        tried.append(gone)
        return True

    chosen = least_recently_used(_candidates(), fits)
    assert [c.worker_id for c in chosen or []] == ["w-old"]
    assert tried == [frozenset({"w-old"})]


def test_more_idle_workers_go_in_least_recently_used_order_until_the_spawn_fits() -> None:
    chosen = least_recently_used(_candidates(), lambda gone: len(gone) >= 2)
    assert [c.worker_id for c in chosen or []] == ["w-old", "w-mid"]


def test_when_stopping_every_idle_worker_would_not_be_enough_none_is_chosen() -> None:
    assert least_recently_used(_candidates(), lambda gone: False) is None
    assert least_recently_used([], lambda gone: True) is None


def test_the_ram_budget_leaves_what_the_workers_book_and_gives_back_what_gone_ones_hold() -> None:
    room = HostRoom(booked_bytes=250 * MIB, budget_bytes=300 * MIB)
    assert room.available(64 * GIB) == 50 * MIB
    freed = HostRoom(booked_bytes=250 * MIB, budget_bytes=300 * MIB, freed_bytes=200 * MIB,
                     gone=frozenset({"w-1"}))
    assert freed.available(64 * GIB) == 250 * MIB and freed.trial
    assert HostRoom().available(64 * GIB) == 64 * GIB and not HostRoom().trial


def test_without_a_budget_gone_workers_add_their_ram_to_what_the_machine_has() -> None:
    assert HostRoom(booked_bytes=GIB, freed_bytes=GIB, gone=frozenset({"w-1"})).available(MIB) == GIB + MIB


def test_a_cpu_spawn_over_the_budget_fits_once_the_idle_worker_is_counted_gone(tmp_path: Path) -> None:
    model = build_tiny_gguf(tmp_path / "tiny.gguf")
    ask = Ask("w-2", "file:///tiny", model, 2048, 2, backend="cpu")
    need = preflight.plan(ask, GpuPolicy(), VramLedger(GpuLimits(), list), tmp_path).ram_bytes
    full = HostRoom(booked_bytes=need, budget_bytes=need + need // 2)
    with pytest.raises(ApiError) as refused:
        preflight.plan(ask, GpuPolicy(), VramLedger(GpuLimits(), list), tmp_path, full)
    assert refused.value.code == "INSUFFICIENT_RAM"
    room = HostRoom(booked_bytes=need, budget_bytes=need + need // 2, freed_bytes=need,
                    gone=frozenset({"w-1"}))
    assert preflight.plan(ask, GpuPolicy(), VramLedger(GpuLimits(), list), tmp_path, room).ram_bytes == need


def _whole(rooms):
    return place(MODEL, rooms, MODEL.offloadable_layers)


def _full_gpu() -> VramLedger:
    """A GPU of WHOLE + 1 GiB on which one worker of MODEL was booked and has loaded (NVML's free
    then lacks its memory)."""
    total = WHOLE + GIB
    devices = [Gpu(0, "GPU-0000", "Test GPU", total, total, 0, 0.0, 40.0, 100.0)]
    ledger = VramLedger(GpuLimits(reserve_mib=0), lambda: list(devices))
    ledger.book("w-1", _whole)
    ledger.loaded("w-1")
    devices[0] = Gpu(0, "GPU-0000", "Test GPU", total, total - WHOLE, WHOLE, 0.0, 40.0, 100.0)
    return ledger


def test_a_trial_counts_a_gone_loaded_workers_vram_as_free_and_books_nothing() -> None:
    ledger = _full_gpu()
    with pytest.raises(ApiError) as refused:
        ledger.book("w-2", _whole, keep=False)
    assert refused.value.code == "INSUFFICIENT_VRAM"
    placement = ledger.book("w-2", _whole, frozenset({"w-1"}), keep=False)
    assert placement.vram_bytes == WHOLE
    assert ledger.rooms()[0].booked_bytes == WHOLE, "the trial booked nothing and w-1 still holds its share"


def _serve_health(body: dict) -> tuple[web.AppRunner, str]:
    async def health(_: web.Request) -> web.Response:
        return web.json_response(body)

    async def start() -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_get("/health", health)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner, f"http://127.0.0.1:{port}"

    return start  # type: ignore[return-value]


@pytest.mark.parametrize(("body", "idle"), [
    ({"state": "idle", "slots_free": 2, "slots_total": 2}, True),
    ({"state": "busy", "slots_free": 1, "slots_total": 2}, False),
    ({"state": "idle", "slots_free": 1, "slots_total": 2}, False),
    ({"state": "draining", "slots_free": 2, "slots_total": 2}, False),
])
def test_the_last_look_at_the_worker_stops_only_one_with_every_slot_free(body: dict, idle: bool) -> None:
    async def check() -> bool:
        runner, url = await _serve_health(body)()
        try:
            async with aiohttp.ClientSession() as session:
                return await still_idle(session, Candidate("w-1", 0.0, 0, url))
        finally:
            await runner.cleanup()

    assert asyncio.run(check()) is idle


def test_a_worker_that_does_not_answer_is_not_stopped() -> None:
    async def check() -> bool:
        async with aiohttp.ClientSession() as session:
            return await still_idle(session, Candidate("w-1", 0.0, 0, "http://127.0.0.1:9"))

    assert asyncio.run(check()) is False
