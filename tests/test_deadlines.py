"""Parsing and checking `X-Request-Deadline`."""

import time

import pytest

from rbee.common import deadlines
from rbee.common.errors import ApiError


def test_epoch_milliseconds_and_rfc3339_name_the_same_moment():
    by_ms = deadlines.parse("1795000000000")
    by_text = deadlines.parse("2026-11-18T11:06:40Z")
    assert by_ms.epoch_s == by_text.epoch_s == 1_795_000_000
    assert by_ms.header == "1795000000000" and by_text.header == "2026-11-18T11:06:40Z"


@pytest.mark.parametrize("text", ["", "soon", "2026-11-18T08:26:40", "123", "9" * 80, "-1795000000000"])
def test_malformed_deadlines_are_refused(text):
    with pytest.raises(ApiError) as caught:
        deadlines.parse(text)
    assert (caught.value.status, caught.value.code) == (400, "INVALID_DEADLINE")


def test_a_passed_deadline_fails_its_check_with_504():
    past = deadlines.parse(str(int((time.time() - 1) * 1000)))
    with pytest.raises(ApiError) as caught:
        past.check()
    assert (caught.value.status, caught.value.code) == (504, "DEADLINE_EXCEEDED")
    future = deadlines.parse(str(int((time.time() + 60) * 1000)))
    future.check()
    assert 50 < future.remaining_s() <= 60
