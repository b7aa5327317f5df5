"""Validators of client input."""

import pytest

from rbee.common.errors import ApiError
from rbee.common.validation import (
    check_model_ref,
    parse_messages,
    parse_prompt,
    parse_sampling,
)


@pytest.mark.parametrize(
    "ref",
    ["default", "gemma-3.q4", "file:///models/tiny.gguf", "hf:org/repo", "hf:org/repo:m.gguf",
     "https://example.org/m.gguf"],
)
def test_good_model_refs_are_accepted(ref):
    assert check_model_ref(ref) == ref


@pytest.mark.parametrize(
    "ref",
    ["", "../etc/passwd", "file:///a/../b.gguf", "file://relative.gguf", "x; rm -rf /",
     "mödel", "http://plain.example/m.gguf", "a" * 600, 42, None, "hf:/repo"],
)
def test_bad_model_refs_are_refused_without_echoing_them(ref):
    with pytest.raises(ApiError) as caught:
        check_model_ref(ref)
    assert caught.value.status == 400
    assert caught.value.code == "INVALID_REQUEST"
    if isinstance(ref, str) and ref:
        assert ref not in caught.value.message


def test_sampling_defaults_apply_when_fields_are_absent():
    params = parse_sampling({})
    assert params.max_tokens == 128 and params.temperature == 0.7 and params.seed is None


@pytest.mark.parametrize(
    "body",
    [{"max_tokens": 0}, {"max_tokens": 10**6}, {"max_tokens": True}, {"max_tokens": "5"},
     {"temperature": -0.1}, {"temperature": 2.5}, {"top_p": 1.5}, {"seed": -1},
     {"stop": ["a", "b", "c", "d", "e"]}, {"stop": 7}],
)
def test_out_of_range_sampling_fields_are_refused(body):
    with pytest.raises(ApiError) as caught:
        parse_sampling(body)
    assert caught.value.status == 400
    assert caught.value.details["field"] in body


@pytest.mark.parametrize("prompt", ["", "nul\x00byte", "esc\x1b[31m", "bidi\u202eoverride", 5])
def test_prompts_with_control_characters_or_wrong_types_are_refused(prompt):
    with pytest.raises(ApiError):
        parse_prompt({"prompt": prompt})


def test_prompts_may_contain_newlines_and_tabs():
    assert parse_prompt({"prompt": "a\n\tb\r\n"}) == "a\n\tb\r\n"


def test_messages_need_known_roles():
    with pytest.raises(ApiError):
        parse_messages({"messages": [{"role": "wizard", "content": "hi"}]})
    assert parse_messages({"messages": [{"role": "user", "content": "hi"}]}) == [
        {"role": "user", "content": "hi"}
    ]
