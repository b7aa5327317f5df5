"""Slot accounting."""

import pytest

from rbee.common.errors import ApiError
from rbee.worker.slots import Slot, SlotPool


def test_slots_are_handed_out_until_none_is_free_then_503():
    pool = SlotPool([Slot(0, None), Slot(1, None)])
    first, second = pool.acquire("a"), pool.acquire("b")
    assert {first.index, second.index} == {0, 1} and pool.free == 0
    with pytest.raises(ApiError) as caught:
        pool.acquire("c")
    assert caught.value.status == 503 and caught.value.code == "ALL_SLOTS_BUSY"
    assert caught.value.headers["Retry-After"] == "1"
    pool.release(first)
    assert pool.free == 1 and pool.acquire("c") is first
