"""The connection guard's bookkeeping: per-address caps and rate-limited refusal logs."""

from __future__ import annotations

import logging

from rbee.common.connection_limits import ConnectionGuard, RefusalLog
from rbee.common.tunables import HttpLimits


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_refusal_is_logged_once_per_address_and_kind_per_window(caplog):
    clock = Clock()
    refusals = RefusalLog(60.0, clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            refusals.warn("10.0.0.7", "too many", "refused")
        refusals.warn("10.0.0.7", "slow headers", "closed")
        refusals.warn("10.0.0.8", "too many", "refused")
        clock.now = 61.0
        refusals.warn("10.0.0.7", "too many", "refused")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "connection from 10.0.0.7: refused",
        "connection from 10.0.0.7: closed",
        "connection from 10.0.0.8: refused",
        "connection from 10.0.0.7: refused (4 more since the last report)",
    ]


def test_an_address_at_its_cap_is_refused_until_one_of_its_connections_closes():
    guard = ConnectionGuard(HttpLimits(max_connections_per_address=2))
    assert guard.admit("10.0.0.7") and guard.admit("10.0.0.7")
    assert not guard.admit("10.0.0.7")
    assert guard.admit("10.0.0.8")
    guard.release("10.0.0.7", None)
    assert guard.admit("10.0.0.7")
    assert guard.open_from("10.0.0.7") == 2
