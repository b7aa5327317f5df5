"""The queen's admission queue on its own: bounded per model, waiters woken oldest first,
a longest wait that ends in 503. No HTTP: the queue is driven as Placement drives it."""

import asyncio

import pytest

from rbee.common.errors import ApiError
from rbee.common.tunables import Timings
from rbee.queen.routing import admission
from rbee.queen.routing.admission import AdmissionQueue

MODEL = "tiny"
OTHER = "other"
WAIT_S = 10.0
"""Generous bound for anything that should happen at once (a loaded 2-core machine)."""


@pytest.fixture
def no_recheck(monkeypatch):
    """Waiters wake only when a slot is freed (or their longest wait ends), never on the
    periodic re-check, so which waiter woke is decided by the queue alone."""
    monkeypatch.setattr(admission, "RECHECK_S", 3600.0)


def _queue(depth: int = 8, wait_max_s: float = 3600.0) -> AdmissionQueue:
    return AdmissionQueue(Timings(admission_queue_depth=depth, admission_wait_max_s=wait_max_s))


async def _waiters(queue: AdmissionQueue, count: int, model: str = MODEL) -> list[asyncio.Task]:
    """Start `count` waiters, in order, and let each take its place in the line."""
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.create_task(queue.wait_turn(model, 0.0)))
        await asyncio.sleep(0)  # the task runs up to its first wait: it is in the line now
    return tasks


async def _cancel(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_a_full_queue_refuses_with_429_and_retry_after():
    async def scenario() -> ApiError:
        queue = _queue(depth=2)
        async with queue.place(MODEL), queue.place(MODEL):
            with pytest.raises(ApiError) as refused:
                async with queue.place(MODEL):
                    pass
        return refused.value

    err = asyncio.run(scenario())
    assert (err.status, err.code) == (429, "QUEUE_FULL")
    assert err.headers["Retry-After"].isdigit()
    assert err.details == {"model": MODEL, "waiting": 2}


def test_a_queue_of_depth_zero_refuses_every_waiter():
    async def scenario() -> ApiError:
        with pytest.raises(ApiError) as refused:
            async with _queue(depth=0).place(MODEL):
                pass
        return refused.value

    assert asyncio.run(scenario()).code == "QUEUE_FULL"


def test_depth_counts_the_requests_holding_a_place_per_model():
    async def scenario() -> tuple[int, int, int, dict]:
        queue = _queue()
        async with queue.place(MODEL), queue.place(MODEL), queue.place(OTHER):
            return queue.depth(MODEL), queue.depth(OTHER), queue.depth(), queue.by_model()

    assert asyncio.run(scenario()) == (2, 1, 3, {MODEL: 2, OTHER: 1})


def test_leaving_the_queue_gives_the_place_back():
    async def scenario() -> tuple[int, dict]:
        queue = _queue(depth=1)
        async with queue.place(MODEL):
            pass
        async with queue.place(MODEL):  # the place freed above fits again
            pass
        return queue.depth(), queue.by_model()

    assert asyncio.run(scenario()) == (0, {})


def test_a_place_is_given_back_when_the_waiting_request_fails():
    async def scenario() -> int:
        queue = _queue(depth=1)
        with pytest.raises(RuntimeError):
            async with queue.place(MODEL):
                raise RuntimeError("the request failed while it waited")
        return queue.depth(MODEL)

    assert asyncio.run(scenario()) == 0


def test_one_models_full_queue_does_not_refuse_another_model():
    async def scenario() -> dict:
        queue = _queue(depth=1)
        async with queue.place(MODEL), queue.place(OTHER):
            return queue.by_model()

    assert asyncio.run(scenario()) == {MODEL: 1, OTHER: 1}


def test_a_waiting_task_gets_the_first_slot_freed(no_recheck):
    async def scenario() -> tuple[bool, bool]:
        queue = _queue()
        first, second = await _waiters(queue, 2)
        queue.slot_freed(MODEL)
        await asyncio.wait_for(first, WAIT_S)
        still_waiting = not second.done()
        queue.slot_freed(MODEL)
        await asyncio.wait_for(second, WAIT_S)
        return still_waiting, second.done()

    assert asyncio.run(scenario()) == (True, True)


def test_waiters_are_woken_oldest_first(no_recheck):
    async def scenario() -> list[int]:
        queue = _queue()
        tasks = await _waiters(queue, 3)
        order = []
        pending = set(tasks)
        while pending:
            queue.slot_freed(MODEL)
            done, pending = await asyncio.wait(pending, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED)
            assert len(done) == 1
            order.append(tasks.index(done.pop()))
        return order

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_freeing_several_slots_wakes_as_many_waiters(no_recheck):
    async def scenario() -> list[bool]:
        queue = _queue()
        tasks = await _waiters(queue, 3)
        queue.slot_freed(MODEL, 2)
        await asyncio.wait_for(asyncio.gather(*tasks[:2]), WAIT_S)
        woken = [t.done() for t in tasks]
        await _cancel(tasks)
        return woken

    assert asyncio.run(scenario()) == [True, True, False]


def test_a_slot_freed_for_another_model_wakes_no_one(no_recheck):
    async def scenario() -> bool:
        queue = _queue()
        other_waiter, = await _waiters(queue, 1, OTHER)
        waiter, = await _waiters(queue, 1)
        queue.slot_freed(OTHER)
        await asyncio.wait_for(other_waiter, WAIT_S)
        woken = waiter.done()
        await _cancel([waiter])
        return woken

    assert asyncio.run(scenario()) is False


def test_a_slot_freed_while_no_one_waits_is_not_kept_for_a_later_waiter(no_recheck):
    async def scenario() -> tuple[bool, bool]:
        queue = _queue()
        queue.slot_freed(MODEL, 5)
        waiter, = await _waiters(queue, 1)
        for _ in range(10):
            await asyncio.sleep(0)
        woken_by_old_slot = waiter.done()
        queue.slot_freed(MODEL)
        await asyncio.wait_for(waiter, WAIT_S)
        return woken_by_old_slot, waiter.done()

    assert asyncio.run(scenario()) == (False, True)


def test_a_waiter_that_gave_up_does_not_take_a_freed_slot(no_recheck):
    async def scenario() -> bool:
        queue = _queue()
        gone, staying = await _waiters(queue, 2)
        await _cancel([gone])
        queue.slot_freed(MODEL)
        await asyncio.wait_for(staying, WAIT_S)
        return staying.done()

    assert asyncio.run(scenario()) is True


def test_a_waiter_looks_again_after_the_recheck_interval_without_being_woken():
    async def scenario() -> None:
        await asyncio.wait_for(_queue().wait_turn(MODEL, 0.0), WAIT_S)

    asyncio.run(scenario())  # returns (to look for a slot again) with no slot freed


def test_a_wait_never_outlasts_what_is_left_of_the_longest_wait(no_recheck):
    async def scenario() -> None:
        await asyncio.wait_for(_queue(wait_max_s=0.05).wait_turn(MODEL, 0.0), WAIT_S)

    asyncio.run(scenario())  # returns after ~0.05 s although re-checks are an hour apart


def test_a_request_that_waited_the_longest_wait_gets_503_queue_timeout_with_retry_after():
    async def scenario() -> ApiError:
        with pytest.raises(ApiError) as timed_out:
            await _queue(wait_max_s=2.0).wait_turn(MODEL, 2.0)
        return timed_out.value

    err = asyncio.run(scenario())
    assert (err.status, err.code) == (503, "QUEUE_TIMEOUT")
    assert err.headers["Retry-After"].isdigit()
    assert err.details == {"model": MODEL, "waited_s": 2.0}
