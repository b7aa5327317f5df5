"""The queen's admission queue on its own: bounded per model and per key, turns to take a slot
handed out in deficit round-robin order across keys (oldest first within one), a longest wait
that ends in 503. No HTTP: the queue is driven as Placement drives it."""

import asyncio
import collections

import pytest

from rbee.common.errors import ApiError
from rbee.common.tunables import Timings
from rbee.queen.routing import admission
from rbee.queen.routing.admission import AdmissionQueue
from rbee.queen.routing.tenant import ANONYMOUS, Tenant

MODEL = "tiny"
OTHER = "other"
WAIT_S = 10.0
"""Generous bound for anything that should happen at once (a loaded 2-core machine)."""


@pytest.fixture
def no_recheck(monkeypatch):
    """Waiters wake only when a slot is freed (or their longest wait ends), never on the
    periodic re-check, so which waiter woke is decided by the queue alone."""
    monkeypatch.setattr(admission, "RECHECK_S", 3600.0)


def _queue(depth: int = 512, wait_max_s: float = 3600.0, share: float = 1.0) -> AdmissionQueue:
    return AdmissionQueue(Timings(admission_queue_depth=depth, admission_wait_max_s=wait_max_s,
                                  admission_key_share=share))


class Slots:
    """Free slots of a fake model: a waiter whose turn finds one takes it, as Placement's
    `_choose` does; `usable` says which waiters may use them (a waiter naming another node may not)."""

    def __init__(self, usable=lambda name: True) -> None:
        self.free = 0
        self.usable = usable
        self.served: list[str] = []
        self.looks: collections.Counter[str] = collections.Counter()


async def _request(queue: AdmissionQueue, slots: Slots, name: str, tenant: Tenant = ANONYMOUS,
                   model: str = MODEL) -> None:
    """One request waiting for a slot, driven as `Placement._admit` drives the queue."""
    async with queue.place(model, name, tenant) as seat:
        while True:
            await queue.wait_turn(seat, 0.0)
            slots.looks[name] += 1
            if not (slots.free and slots.usable(name)):
                queue.passed(seat, saw_all=slots.usable(name))
            elif queue.take(seat):
                slots.free -= 1
                slots.served.append(name)
                return


async def _waiters(queue: AdmissionQueue, slots: Slots, names: list[str], tenant: Tenant = ANONYMOUS,
                   model: str = MODEL) -> list[asyncio.Task]:
    """Start a request per name, in order, and let each take its place in the line."""
    tasks = []
    for name in names:
        tasks.append(asyncio.create_task(_request(queue, slots, name, tenant, model)))
        await asyncio.sleep(0)  # the task runs up to its first wait: it is in the line now
    return tasks


def _free(queue: AdmissionQueue, slots: Slots, count: int = 1, model: str = MODEL) -> None:
    slots.free += count
    queue.slot_freed(model, count)


async def _served(slots: Slots, count: int) -> list[str]:
    """The names served once `count` were, in the order they got their slots."""
    for _ in range(int(WAIT_S / 0.01)):
        if len(slots.served) >= count:
            return slots.served
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {slots.served} were served")


async def _cancel(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(1, count + 1)]


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


def test_a_waiting_request_gets_the_first_slot_freed(no_recheck):
    async def scenario() -> tuple[list[str], list[str]]:
        queue, slots = _queue(), Slots()
        tasks = await _waiters(queue, slots, ["first", "second"])
        _free(queue, slots)
        first = list(await _served(slots, 1))
        _free(queue, slots)
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
        return first, slots.served

    assert asyncio.run(scenario()) == (["first"], ["first", "second"])


def test_one_keys_requests_are_served_oldest_first(no_recheck):
    async def scenario() -> list[str]:
        queue, slots = _queue(), Slots()
        tasks = await _waiters(queue, slots, _names("r", 5))
        for _ in tasks:
            _free(queue, slots)
            await asyncio.sleep(0.01)
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
        return slots.served

    assert asyncio.run(scenario()) == ["r1", "r2", "r3", "r4", "r5"]


def test_freeing_several_slots_serves_as_many_waiters(no_recheck):
    async def scenario() -> list[bool]:
        queue, slots = _queue(), Slots()
        tasks = await _waiters(queue, slots, _names("r", 3))
        _free(queue, slots, 2)
        await asyncio.wait_for(asyncio.gather(*tasks[:2]), WAIT_S)
        await asyncio.sleep(0.05)
        served = [t.done() for t in tasks]
        await _cancel(tasks)
        return served

    assert asyncio.run(scenario()) == [True, True, False]


def test_two_keys_of_equal_weight_take_turns_at_the_slots_freed(no_recheck):
    async def scenario() -> list[str]:
        queue, slots = _queue(), Slots()
        tasks = [*await _waiters(queue, slots, _names("a", 6), Tenant("a")),
                 *await _waiters(queue, slots, _names("b", 3), Tenant("b"))]
        _free(queue, slots, 9)
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
        return slots.served

    assert asyncio.run(scenario()) == ["a1", "b1", "a2", "b2", "a3", "b3", "a4", "a5", "a6"]


def test_a_key_of_weight_three_gets_three_slots_to_the_others_one(no_recheck):
    async def scenario() -> list[str]:
        queue, slots = _queue(), Slots()
        tasks = [*await _waiters(queue, slots, _names("a", 4), Tenant("a")),
                 *await _waiters(queue, slots, _names("b", 6), Tenant("b", 3.0))]
        _free(queue, slots, 10)
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
        return slots.served

    assert asyncio.run(scenario()) == ["a1", "b1", "b2", "b3", "a2", "b4", "b5", "b6", "a3", "a4"]


def test_a_flooding_key_does_not_starve_a_key_sending_one_request_at_a_time(no_recheck):
    async def scenario() -> list[int]:
        queue, slots = _queue(), Slots()
        flood = await _waiters(queue, slots, _names("flood", 200), Tenant("flood"))
        served_before = []
        for i in range(1, 6):
            trickle = await _waiters(queue, slots, [f"trickle{i}"], Tenant("trickle"))
            while not trickle[0].done():
                _free(queue, slots)
                await asyncio.sleep(0.005)
            served_before.append(sum(name.startswith("flood") for name in slots.served))
        await _cancel(flood)
        return served_before

    # each trickle request is served after at most one more of the flood's 200 queued requests
    served_before = asyncio.run(scenario())
    assert all(b - a <= 2 for a, b in zip([0, *served_before], served_before, strict=False))
    assert served_before[-1] <= 10


def test_a_slot_found_by_the_recheck_goes_to_the_waiter_drr_serves_next(monkeypatch):
    monkeypatch.setattr(admission, "RECHECK_S", 0.05)

    async def scenario() -> list[str]:
        queue, slots = _queue(), Slots()
        tasks = [*await _waiters(queue, slots, _names("flood", 50), Tenant("flood")),
                 *await _waiters(queue, slots, ["trickle1"], Tenant("trickle"))]
        _free(queue, slots)  # flood1's turn: the trickle's request is next in DRR order now
        await _served(slots, 1)
        slots.free += 1  # a slot the queue is not told of (a heartbeat brought it)
        await _served(slots, 2)
        await _cancel(tasks)
        return slots.served

    assert asyncio.run(scenario()) == ["flood1", "trickle1"]


def test_a_waiter_that_cannot_use_the_slot_passes_the_turn_on_in_drr_order(no_recheck):
    async def scenario() -> list[str]:
        queue, slots = _queue(), Slots(usable=lambda name: name != "a1")
        tasks = [*await _waiters(queue, slots, _names("a", 3), Tenant("a")),
                 *await _waiters(queue, slots, _names("b", 3), Tenant("b"))]
        _free(queue, slots)
        await _served(slots, 1)
        await _cancel(tasks)
        return slots.served

    assert asyncio.run(scenario()) == ["b1"]  # a1 names another node: b1 is next in DRR order


def test_a_slot_freed_for_another_model_serves_no_one(no_recheck):
    async def scenario() -> list[str]:
        queue, slots = _queue(), Slots()
        others = await _waiters(queue, slots, ["other"], model=OTHER)
        waiter = await _waiters(queue, slots, ["mine"])
        _free(queue, slots, model=OTHER)
        await asyncio.wait_for(others[0], WAIT_S)
        await asyncio.sleep(0.05)
        await _cancel(waiter)
        return slots.served

    assert asyncio.run(scenario()) == ["other"]


def test_a_slot_freed_while_no_one_waits_is_not_kept_for_a_later_waiter(no_recheck):
    async def scenario() -> tuple[bool, list[str]]:
        queue, slots = _queue(), Slots()
        queue.slot_freed(MODEL, 5)
        slots.free = 1
        waiter = await _waiters(queue, slots, ["late"])
        await asyncio.sleep(0.05)
        served_by_old_slot = waiter[0].done()
        queue.slot_freed(MODEL)
        await asyncio.wait_for(waiter[0], WAIT_S)
        return served_by_old_slot, slots.served

    assert asyncio.run(scenario()) == (False, ["late"])


def test_a_waiter_that_gave_up_does_not_take_a_freed_slot(no_recheck):
    async def scenario() -> list[str]:
        queue, slots = _queue(), Slots()
        gone, staying = await _waiters(queue, slots, ["gone", "staying"])
        await _cancel([gone])
        _free(queue, slots)
        await asyncio.wait_for(staying, WAIT_S)
        return slots.served

    assert asyncio.run(scenario()) == ["staying"]


def test_a_waiter_that_gives_up_during_its_turn_passes_the_turn_on(no_recheck):
    async def scenario() -> list[str]:
        queue, slots = _queue(), Slots()
        gone, staying = await _waiters(queue, slots, ["gone", "staying"])
        _free(queue, slots)  # gone has the turn now, and is cancelled before it looks
        gone.cancel()
        await asyncio.wait_for(staying, WAIT_S)
        return slots.served

    assert asyncio.run(scenario()) == ["staying"]


def test_a_waiter_looks_again_after_the_recheck_interval_without_being_woken(monkeypatch):
    monkeypatch.setattr(admission, "RECHECK_S", 0.05)

    async def scenario() -> list[str]:
        queue, slots = _queue(), Slots()
        waiter = await _waiters(queue, slots, ["only"])
        slots.free = 1  # no slot_freed: found by the recheck
        await asyncio.wait_for(waiter[0], WAIT_S)
        return slots.served

    assert asyncio.run(scenario()) == ["only"]


def test_positions_follow_the_order_drr_serves_in(no_recheck):
    async def scenario() -> list[int | None]:
        queue, slots = _queue(), Slots()
        tasks = [*await _waiters(queue, slots, _names("a", 3), Tenant("a")),
                 *await _waiters(queue, slots, ["b1"], Tenant("b"))]
        positions = [queue.position(MODEL, name) for name in ("a1", "b1", "a2", "a3")]
        await _cancel(tasks)
        return [*positions, queue.position(MODEL, "a1")]

    assert asyncio.run(scenario()) == [1, 2, 3, 4, None]


def test_a_key_past_its_share_of_the_queue_is_refused_and_another_key_is_not():
    async def scenario() -> tuple[ApiError, int]:
        queue = _queue(depth=4, share=0.5)
        flood = Tenant("flood")
        async with queue.place(MODEL, tenant=flood), queue.place(MODEL, tenant=flood):
            with pytest.raises(ApiError) as refused:
                async with queue.place(MODEL, tenant=flood):
                    pass
            async with queue.place(MODEL, tenant=Tenant("other")):
                return refused.value, queue.depth(MODEL)

    err, depth = asyncio.run(scenario())
    assert (err.status, err.code) == (429, "QUEUE_FULL")
    assert err.details == {"model": MODEL, "waiting": 2, "key": "flood", "key_waiting": 2, "key_share": 2}
    assert depth == 3


def test_a_key_may_hold_one_place_however_small_its_share():
    async def scenario() -> int:
        queue = _queue(depth=4, share=0.01)
        async with queue.place(MODEL, tenant=Tenant("a")):
            return queue.depth(MODEL)

    assert asyncio.run(scenario()) == 1


def test_a_wait_never_outlasts_the_longest_wait(no_recheck):
    async def scenario() -> ApiError:
        queue = _queue(wait_max_s=0.05)
        with pytest.raises(ApiError) as timed_out:
            await asyncio.wait_for(_request(queue, Slots(), "r"), WAIT_S)
        return timed_out.value

    err = asyncio.run(scenario())  # ~0.05 s although re-checks are an hour apart
    assert (err.status, err.code) == (503, "QUEUE_TIMEOUT")


def test_a_request_that_waited_the_longest_wait_gets_503_queue_timeout_with_retry_after():
    async def scenario() -> ApiError:
        queue = _queue(wait_max_s=2.0)
        async with queue.place(MODEL) as seat:
            with pytest.raises(ApiError) as timed_out:
                await queue.wait_turn(seat, 2.0)
        return timed_out.value

    err = asyncio.run(scenario())
    assert (err.status, err.code) == (503, "QUEUE_TIMEOUT")
    assert err.headers["Retry-After"].isdigit()
    assert err.details == {"model": MODEL, "waited_s": 2.0}


def test_a_slot_freed_while_a_later_waiter_looks_goes_to_the_waiter_drr_serves_next(monkeypatch):
    monkeypatch.setattr(admission, "RECHECK_S", 0.05)

    async def scenario() -> list[str]:
        on_another_node = {"t1"}  # t1 names a node whose slots are all busy
        queue, slots = _queue(), Slots(usable=lambda name: name not in on_another_node)
        looking, go_on = asyncio.Event(), asyncio.Event()

        async def slow_look(name: str) -> None:
            """f2's look takes a while (its hive is slow to answer), as a recheck's look may."""
            async with queue.place(MODEL, name, Tenant("flood")) as seat:
                while True:
                    await queue.wait_turn(seat, 0.0)
                    looking.set()
                    await go_on.wait()
                    if not slots.free:
                        queue.passed(seat, saw_all=True)
                    elif queue.take(seat):
                        slots.free -= 1
                        slots.served.append(name)
                        return

        tasks = [*await _waiters(queue, slots, ["f1"], Tenant("flood"))]
        tasks.append(asyncio.create_task(slow_look("f2")))
        await asyncio.sleep(0)
        tasks += await _waiters(queue, slots, ["f3"], Tenant("flood"))
        tasks += await _waiters(queue, slots, ["t1"], Tenant("trickle"))
        _free(queue, slots)  # f1 is served: the order is t1, f2, f3 now
        await _served(slots, 1)
        await asyncio.wait_for(looking.wait(), WAIT_S)  # the recheck's pass: t1 found nothing, f2 looks
        on_another_node.clear()
        _free(queue, slots)  # a slot of t1's node comes free while f2 looks (f2 may use any node)
        go_on.set()
        await _served(slots, 2)
        await _cancel(tasks)
        return slots.served

    assert asyncio.run(scenario()) == ["f1", "t1"]


def test_a_recheck_ends_with_the_first_waiter_that_may_use_any_slot_and_found_none(monkeypatch):
    monkeypatch.setattr(admission, "RECHECK_S", 0.02)

    async def scenario() -> collections.Counter[str]:
        queue, slots = _queue(), Slots(usable=lambda name: name != "pinned")
        tasks = [*await _waiters(queue, slots, ["pinned"], Tenant("a")),
                 *await _waiters(queue, slots, _names("any", 3), Tenant("b"))]
        await asyncio.sleep(0.3)
        await _cancel(tasks)
        return slots.looks

    looks = asyncio.run(scenario())
    # pinned (names a busy node) passes the turn on; any1 could use any slot and found none:
    # nobody behind it looks
    assert looks["pinned"] >= 3 and looks["any1"] >= 3
    assert looks["any2"] == looks["any3"] == 0
