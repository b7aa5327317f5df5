"""Choosing where a prompt's prefix is reused from: the longest common prefix, the plan between
a slot's own cells and another's, and the slot a request is given."""

from hypothesis import given
from hypothesis import strategies as st

from rbee.worker.prefix_cache import PrefixIndex, Reuse, common_prefix, plan

tokens = st.lists(st.integers(0, 3), max_size=40)


@given(tokens, tokens)
def test_the_common_prefix_is_the_longest_run_of_equal_leading_tokens(a, b):
    n = common_prefix(a, b)
    assert a[:n] == b[:n]
    assert n == min(len(a), len(b)) or a[n] != b[n]


def test_a_slot_reuses_its_own_cells_but_never_the_last_prompt_token():
    assert plan(0, [1, 2, 3], [1, 2, 3, 9], [], copy_min_tokens=4) == Reuse(0, 2)
    assert plan(0, [1, 2, 3], [7], [], copy_min_tokens=4) == Reuse(0, 0)


def test_another_sequence_is_copied_only_when_it_holds_enough_more_of_the_prompt():
    prompt = list(range(20))
    own = prompt[:5]
    assert plan(0, prompt, own, [(1, prompt[:12])], copy_min_tokens=8) == Reuse(0, 5)
    assert plan(0, prompt, own, [(1, prompt[:13])], copy_min_tokens=8) == Reuse(1, 13)
    assert plan(0, prompt, own, [(1, prompt[:13]), (2, prompt + [5])], copy_min_tokens=8) == Reuse(2, 19)


def test_a_copy_of_nothing_is_never_planned():
    assert plan(0, [1, 2], [], [(1, [3])], copy_min_tokens=0) == Reuse(0, 0)


def test_a_request_gets_the_free_slot_with_its_prefix_else_the_least_recently_used_one():
    index = PrefixIndex()
    conversation = list(range(100, 150))
    index.keep(2, [1, *conversation])
    index.keep(0, [1, 7, 7, 7])
    index.keep(1, [1, 8, 8, 8])
    assert index.choose([1, *conversation, 5], [0, 1, 2]) == 2
    assert index.choose([1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9], [0, 1, 2]) == 2
    assert index.choose([1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9], [0, 1, 3]) == 3
    assert index.take(2) == [1, *conversation]
    assert index.idle() == [(0, [1, 7, 7, 7]), (1, [1, 8, 8, 8])]
