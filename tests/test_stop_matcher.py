"""Streaming stop-sequence detection."""

from rbee.worker.stop_matcher import StopMatcher


def test_text_without_stops_passes_through_at_once():
    matcher = StopMatcher([])
    assert matcher.feed("hello ") == "hello "
    assert matcher.flush() == ""


def test_a_stop_split_across_chunks_is_never_emitted():
    matcher = StopMatcher(["\nUser:"])
    released = matcher.feed("Sure thing.\nUs") + matcher.feed("er: hi")
    assert released == "Sure thing."
    assert matcher.stopped


def test_a_partial_match_that_diverges_is_released():
    matcher = StopMatcher(["\nUser:"])
    assert matcher.feed("line\nU") == "line"
    assert matcher.feed("nder") == "\nUnder"
    assert not matcher.stopped


def test_held_back_text_is_flushed_at_the_end():
    matcher = StopMatcher(["END"])
    assert matcher.feed("the EN") == "the "
    assert matcher.flush() == "EN"


def test_the_earliest_of_several_stops_wins():
    matcher = StopMatcher(["bb", "a"])
    assert matcher.feed("xxabb") == "xx"
    assert matcher.feed("more") == ""
