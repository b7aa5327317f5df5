"""JSON nesting measured without recursion, and refused beyond a limit."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rbee.common.json_depth import JsonTooDeep, loads, nesting

TRICKY = st.text(alphabet='[]{}"\\ab\n')
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY, inner, max_size=3),
    max_leaves=20,
)


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    return 0


@given(JSON)
def test_nesting_is_the_depth_of_the_value_brackets_in_strings_left_out(value):
    text = json.dumps(value)
    assert nesting(text) == _depth(value)
    assert nesting(text.encode()) == _depth(value)


def test_fifty_thousand_levels_are_refused_without_recursing():
    with pytest.raises(JsonTooDeep) as refused:
        loads(b"[" * 50000 + b"]" * 50000, 64)
    assert refused.value.limit == 64


def test_an_unclosed_deep_text_is_refused_too():
    with pytest.raises(JsonTooDeep):
        loads("{\"a\":" * 1000, 64)


def test_a_value_at_the_limit_parses():
    text = "[" * 64 + "]" * 64
    assert loads(text, 64) == json.loads(text)


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"prompt": "[" * 500 + '\\"{' * 100})
    assert loads(text, 2) == json.loads(text)
