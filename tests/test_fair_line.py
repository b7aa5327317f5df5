"""Deficit round-robin across the keys waiting for one model (`FairLine`), as pure logic: the
order it serves waiters in, by weight, and positions as that order."""

import random

from rbee.queen.routing.fair_line import FairLine
from rbee.queen.routing.tenant import Tenant

A, B, C = Tenant("a"), Tenant("b"), Tenant("c")


def _line(*waiters: tuple[str, Tenant]) -> FairLine[str]:
    line: FairLine[str] = FairLine(refresh_s=0.0)
    for seat, tenant in waiters:
        line.add(seat, tenant)
    return line


def _many(tenant: Tenant, count: int, start: int = 1) -> list[tuple[str, Tenant]]:
    return [(f"{tenant.name}{i}", tenant) for i in range(start, start + count)]


def _serve_all(line: FairLine[str]) -> list[str]:
    """Serve every waiter, each time the one DRR picks next; the seats in served order."""
    served = []
    while len(line):
        seat = next(line.order())
        line.serve(seat, seat.rstrip("0123456789"))
        served.append(seat)
    return served


def test_one_key_is_served_in_arrival_order():
    assert _serve_all(_line(*_many(A, 5))) == ["a1", "a2", "a3", "a4", "a5"]


def test_two_keys_of_equal_weight_take_turns_whoever_queued_more():
    line = _line(*_many(A, 6), *_many(B, 3))
    assert _serve_all(line) == ["a1", "b1", "a2", "b2", "a3", "b3", "a4", "a5", "a6"]


def test_a_key_of_weight_three_gets_three_slots_to_a_weight_one_keys_one():
    line = _line(*_many(Tenant("a", 3.0), 7), *_many(B, 4))
    assert _serve_all(line) == ["a1", "a2", "a3", "b1", "a4", "a5", "a6", "b2", "a7", "b3", "b4"]


def test_the_heavier_key_gets_its_share_also_when_it_arrives_second():
    line = _line(*_many(A, 3), *_many(Tenant("b", 3.0), 6))
    assert _serve_all(line) == ["a1", "b1", "b2", "b3", "a2", "b4", "b5", "b6", "a3"]


def test_fractional_weights_keep_their_ratio_over_rounds():
    line = _line(*_many(Tenant("a", 1.5), 6), *_many(B, 4))
    served = _serve_all(line)[:5]
    assert sorted(served) == ["a1", "a2", "a3", "b1", "b2"]


def test_three_keys_each_get_a_turn_per_round():
    line = _line(*_many(A, 3), *_many(B, 3), *_many(C, 3))
    assert _serve_all(line)[:6] == ["a1", "b1", "c1", "a2", "b2", "c2"]


def test_a_trickle_keys_request_goes_ahead_of_the_floods_backlog():
    line = _line(*_many(A, 200))
    for _ in range(50):
        line.serve(next(line.order()), "a")
    line.add("b1", B)
    assert line.position("b1") <= 2
    assert _serve_all(line).index("b1") <= 1


def test_a_key_that_left_and_came_back_saved_no_credit_while_away():
    line = _line(*_many(A, 8), ("b1", B))
    for expected in ("a1", "b1", "a2", "a3", "a4"):
        seat = next(line.order())
        assert seat == expected
        line.serve(seat, seat[0])
    for seat, tenant in _many(B, 3, start=2):
        line.add(seat, tenant)
    assert _serve_all(line) == ["b2", "a5", "b3", "a6", "b4", "a7", "a8"]  # one each, no burst


def test_a_key_that_came_back_waits_at_most_one_round():
    line = _line(*_many(A, 4), *_many(B, 4), ("c1", C))
    for _ in range(3):  # a1, b1, c1: c has no waiter left and leaves the ring
        line.serve(next(line.order()), next(line.order())[0])
    line.add("c2", C)
    assert list(line.order())[:3] == ["a2", "b2", "c2"]


def test_a_key_served_out_of_turn_gives_up_its_next_turn():
    line = _line(*_many(A, 3), *_many(B, 3))
    line.serve("b1", "b")  # a1 could not use the slot: b1 took it out of turn
    assert list(line.order()) == ["a1", "a2", "b2", "a3", "b3"]


def test_a_waiter_that_gave_up_leaves_the_order_without_charging_its_key():
    line = _line(*_many(A, 3), *_many(B, 3))
    line.remove("b1", "b")
    assert list(line.order()) == ["a1", "b2", "a2", "b3", "a3"]


def test_positions_are_the_order_drr_would_serve_the_waiters_in():
    line = _line(*_many(A, 3), *_many(B, 2))
    assert [line.position(s) for s in ("a1", "b1", "a2", "b2", "a3")] == [1, 2, 3, 4, 5]
    line.serve("a1", "a")
    assert [line.position(s) for s in ("b1", "a2", "b2", "a3")] == [1, 2, 3, 4]
    assert line.position("a1") is None


def test_a_new_keys_waiter_goes_ahead_of_the_later_waiters_of_a_key_already_waiting():
    line = _line(*_many(A, 4))
    line.add("b1", B)
    assert line.position("b1") == 2
    assert line.position("a4") == 5


def test_waiting_counts_each_keys_waiters():
    line = _line(*_many(A, 3), *_many(B, 1))
    line.serve("a1", "a")
    assert (line.waiting("a"), line.waiting("b"), line.waiting("c"), len(line)) == (2, 1, 0, 3)


def test_the_order_told_holds_while_the_waiters_are_served_whatever_the_weights():
    rng = random.Random(16)
    for _ in range(200):
        weights = [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 7.0]
        tenants = [Tenant(f"t{i}", rng.choice(weights)) for i in range(rng.randint(1, 5))]
        line: FairLine[str] = FairLine()
        for i in range(rng.randint(1, 40)):
            tenant = rng.choice(tenants)
            line.add(f"{tenant.name}-{i}", tenant)
        for _ in range(min(len(line) - 1, rng.randint(0, 5))):  # some served: the ring is mid-round
            seat = next(line.order())
            line.serve(seat, seat.split("-")[0])
        told = list(line.order())
        served = []
        while len(line):
            seat = next(line.order())
            line.serve(seat, seat.split("-")[0])
            served.append(seat)
        assert served == told


def test_a_waiter_that_just_arrived_is_told_its_position_at_once_between_refreshes():
    line: FairLine[str] = FairLine(refresh_s=3600.0)
    for seat, tenant in _many(A, 3):
        line.add(seat, tenant)
    assert line.position("a1") == 1
    line.add("b1", B)
    assert line.position("b1") == 2
