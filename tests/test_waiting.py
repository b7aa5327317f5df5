"""What a waiting request is told: its place in the admission queue with an estimate from the
model's measured service rate, its worker's loading share, and how often a note goes out."""

import asyncio

from rbee.common.tunables import Timings
from rbee.queen.routing.admission import AdmissionQueue
from rbee.queen.routing.waiting import (
    NOTE_REPEAT_S,
    SERVICE_WINDOW_S,
    NoteThrottle,
    ServiceRate,
    loading_note,
    queued_note,
)


def test_no_rate_is_known_before_two_releases():
    rate = ServiceRate()
    assert rate.eta_s(1, now=10.0) is None
    rate.released(now=10.0)
    assert rate.eta_s(1, now=11.0) is None


def test_the_rate_counts_releases_from_the_oldest_in_the_window_up_to_now():
    rate = ServiceRate()
    for second in (0.0, 1.0, 2.0, 3.0, 4.0):
        rate.released(now=second)
    assert rate.per_second(now=4.0) == 1.0
    assert rate.eta_s(3, now=4.0) == 3
    # nothing finished for 4 more seconds: the rate halves and the estimate doubles
    assert rate.per_second(now=8.0) == 0.5
    assert rate.eta_s(3, now=8.0) == 6


def test_releases_older_than_the_window_are_forgotten():
    rate = ServiceRate()
    rate.released(now=0.0)
    rate.released(now=1.0)
    assert rate.per_second(now=1.0 + SERVICE_WINDOW_S + 0.5) is None


def test_the_estimate_is_rounded_up_to_whole_seconds():
    rate = ServiceRate()
    for second in (0.0, 1.0, 2.0):
        rate.released(now=second)
    assert rate.eta_s(1, now=3.0) == 2  # 2 releases in 3 s: 1.5 s for the next


def test_notes_read_as_the_api_documents_them():
    assert queued_note(3, 12) == "queued position=3 eta_s=12"
    assert queued_note(1, None) == "queued position=1"
    assert loading_note(0.4) == "loading 40%"
    assert loading_note(0.999) == "loading 99%"
    assert loading_note(1.0) == "loading 100%"


def test_a_note_goes_out_when_it_changed_or_after_the_repeat_interval():
    throttle = NoteThrottle()
    assert throttle.admit("queued position=2", 0.0)
    assert not throttle.admit("queued position=2", 0.5)
    assert throttle.admit("queued position=1", 0.75)
    assert not throttle.admit("queued position=1", 0.75 + NOTE_REPEAT_S - 0.1)
    assert throttle.admit("queued position=1", 0.75 + NOTE_REPEAT_S)
    assert not throttle.admit(None, 10.0)


def test_waiters_hold_positions_by_arrival_and_move_up_as_earlier_ones_leave():
    async def scenario():
        queue = AdmissionQueue(Timings(admission_queue_depth=8))
        seen = []
        where = queue.position
        async with queue.place("m", "a"):
            async with queue.place("m", "b"), queue.place("other", "c"):
                seen.append((where("m", "a"), where("m", "b"), where("other", "c")))
            async with queue.place("m", "d"):
                seen.append((where("m", "a"), where("m", "b"), where("m", "d")))
        seen.append((where("m", "a"),))
        return seen

    assert asyncio.run(scenario()) == [(1, 2, 1), (1, None, 2), (None,)]


def test_finished_requests_give_the_queue_its_estimate():
    async def scenario():
        queue = AdmissionQueue(Timings(admission_queue_depth=8))
        before = queue.eta_s("m", 1)
        queue.finished("m")
        await asyncio.sleep(0.05)
        queue.finished("m")
        return before, queue.eta_s("m", 1)

    before, after = asyncio.run(scenario())
    assert before is None and after is not None and after >= 1
