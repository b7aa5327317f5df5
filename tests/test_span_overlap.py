"""`most_at_once`: the peak number of spans open together (the client-side slot count of features/140)."""

from __future__ import annotations

from steps.concurrency_steps import most_at_once


def test_back_to_back_spans_do_not_overlap() -> None:
    assert most_at_once([(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]) == 1


def test_nested_and_crossing_spans_are_counted() -> None:
    assert most_at_once([(0.0, 10.0), (1.0, 2.0), (1.5, 3.0), (2.5, 4.0)]) == 3


def test_no_span_is_zero() -> None:
    assert most_at_once([]) == 0
