"""Restart backoff, jitter and the per-model circuit breaker."""

from rbee.common.tunables import Timings
from rbee.hive.restart_policy import RestartPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delays_double_from_the_initial_value_up_to_the_cap():
    policy = RestartPolicy(Timings(), uniform=lambda low, high: 1.0)
    assert [policy.delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_jitter_spreads_each_delay_by_the_configured_fraction():
    seen = []

    def highest(low: float, high: float) -> float:
        seen.append((low, high))
        return high

    policy = RestartPolicy(Timings(restart_jitter=0.2), uniform=highest)
    assert policy.delay(1) == 2 * 1.2
    assert seen == [(0.8, 1.2)]


def test_the_breaker_opens_after_max_restarts_within_the_window_and_closes_after_it():
    clock = FakeClock()
    policy = RestartPolicy(Timings(max_restarts=2, restart_window_s=60), clock=clock)
    assert policy.try_restart("m") and policy.try_restart("m")
    assert policy.breaker_open("m") and not policy.try_restart("m")
    assert not policy.breaker_open("other")
    clock.now += 61
    assert not policy.breaker_open("m") and policy.try_restart("m")


def test_zero_max_restarts_never_restarts_but_never_blocks_a_first_start():
    policy = RestartPolicy(Timings(max_restarts=0))
    assert not policy.try_restart("m")
    assert not policy.breaker_open("m")
