"""Property-based tests of the input validators: what they accept, what they refuse, what they say."""

from __future__ import annotations

import os
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rbee.common.errors import ApiError
from rbee.common.request_body import RequestBody
from rbee.common.validation import (
    MAX_MODEL_REF_CHARS,
    MAX_NODE_NAME_CHARS,
    MAX_PROMPT_CHARS,
    check_int,
    check_model_ref,
    check_node_name,
    check_path_within,
    check_port,
    check_text,
)
from rbee.common.wire_requests import SpawnRequest, TaskRequest
from rbee.queen.api import openapi
from rbee.queen.api.openai_requests import ChatCompletionRequest, CompletionRequest

PROPERTY = settings(max_examples=150, deadline=None)

SHELL_METACHARACTERS = ";|&$`()<>*?!{}[]'\"\\"
ASCII_WHITESPACE = " \t\n\r\x0b\x0c"
ASCII_CONTROLS = "".join(chr(c) for c in [*range(0x20), 0x7F])
BIDI_OVERRIDES = "".join(chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
PROMPT_FORBIDDEN = "".join(c for c in ASCII_CONTROLS if c not in "\t\n\r") + BIDI_OVERRIDES

_ALNUM = string.ascii_letters + string.digits
_SEGMENT = st.builds(str.__add__, st.sampled_from(_ALNUM), st.text(_ALNUM + "_.-", max_size=15))
_LABEL = st.one_of(
    st.sampled_from(_ALNUM),
    st.builds(lambda a, mid, z: a + mid + z, st.sampled_from(_ALNUM), st.text(_ALNUM + "-", max_size=61),
              st.sampled_from(_ALNUM)),
)
_HOST = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)

node_names = (
    st.lists(_LABEL, min_size=1, max_size=4).map(".".join).filter(lambda n: len(n) <= MAX_NODE_NAME_CHARS)
)
catalog_names = st.builds(str.__add__, st.sampled_from(_ALNUM), st.text(_ALNUM + "_.-", max_size=60))
hf_refs = st.builds(
    lambda org, repo, file: f"hf:{org}/{repo}" + (f":{'/'.join(file)}" if file else ""),
    _SEGMENT,
    _SEGMENT,
    st.lists(_SEGMENT, max_size=3),
)
file_refs = st.lists(_SEGMENT, min_size=1, max_size=5).map(lambda parts: f"file:///{'/'.join(parts)}.gguf")
_DOT_SEGMENTS = st.sampled_from(["..", ".", "%2e%2e", "%2E.", ".%2e", "%2e"])
_HTTPS_ORIGIN = st.builds(
    lambda host, port: f"https://{host}{port}/",
    _HOST,
    st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")),
)


def _spliced(parts: list[str], piece: str, at: int) -> list[str]:
    """`parts` with `piece` inserted at position `at` modulo their number plus one."""
    cut = at % (len(parts) + 1)
    return [*parts[:cut], piece, *parts[cut:]]


https_refs = st.builds(str.__add__, _HTTPS_ORIGIN, st.lists(_SEGMENT, max_size=4).map("/".join))
model_refs = st.one_of(catalog_names, hf_refs, file_refs, https_refs)
_DOTTED_PATH = st.builds(
    lambda parts, dots, at: "/".join(_spliced(parts, dots, at)),
    st.lists(_SEGMENT, max_size=3),
    _DOT_SEGMENTS,
    st.integers(0),
)
traversing_refs = st.one_of(
    st.builds(lambda org, repo, path: f"hf:{org}/{repo}:{path}", _SEGMENT, _SEGMENT, _DOTTED_PATH),
    _DOTTED_PATH.map(lambda path: f"file:///{path}/m.gguf"),
    st.builds(str.__add__, _HTTPS_ORIGIN, _DOTTED_PATH),
)


def _refusal(check: Callable[[Any], Any], value: Any) -> ApiError:
    """The ApiError that `check(value)` raises (failing the test if it accepts)."""
    with pytest.raises(ApiError) as caught:
        check(value)
    assert (caught.value.status, caught.value.code) == (400, "INVALID_REQUEST")
    return caught.value


def _insert(text: str, piece: str, at: int) -> str:
    """`text` with `piece` inserted at position `at` modulo its length plus one."""
    cut = at % (len(text) + 1)
    return text[:cut] + piece + text[cut:]


def _inserted(base: st.SearchStrategy[str], pieces: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A string from `base` with a string from `pieces` inserted at any position."""
    return st.builds(_insert, base, pieces, st.integers(0))


def _messages(check: Callable[[Any], Any], examples: list[Any]) -> frozenset[str]:
    """The messages of the refusals of `examples`, one per rule."""
    return frozenset(_refusal(check, example).message for example in examples)


def _ref(value: Any) -> str:
    return check_model_ref(value, "model")


def _node(value: Any) -> str:
    return check_node_name("node", value)


def _prompt(value: Any) -> str:
    return check_text("prompt", value, MAX_PROMPT_CHARS)


MODEL_REF_RULES = _messages(
    _ref,
    [42, "a" * (MAX_MODEL_REF_CHARS + 1), "https://x/%2f", "https://x/%c3%b6", "a;b", "hf:o/r:..", "zz://x"],
)
NODE_NAME_RULES = _messages(_node, [None, "a" * (MAX_NODE_NAME_CHARS + 1), "a_b"])
PROMPT_RULES = _messages(_prompt, [5, "", "a" * (MAX_PROMPT_CHARS + 1), "\x00"])
ALL_RULES = MODEL_REF_RULES | NODE_NAME_RULES | PROMPT_RULES


@PROPERTY
@given(node_names)
def test_every_rfc_1123_node_name_is_accepted_and_returned_in_lowercase(name):
    assert check_node_name("node", name) == name.lower()


@PROPERTY
@given(_inserted(node_names, st.characters(exclude_characters="-.", exclude_categories=("Lu", "Ll", "Nd"))))
def test_a_node_name_with_any_character_outside_letters_digits_dot_and_hyphen_is_refused(name):
    _refusal(_node, name)


@PROPERTY
@given(_inserted(node_names, st.characters(min_codepoint=0x80)))
def test_a_node_name_with_a_non_ascii_character_is_refused(name):
    _refusal(_node, name)


@PROPERTY
@given(node_names, st.sampled_from(["-", "."]), st.booleans())
def test_a_node_name_with_a_leading_or_trailing_hyphen_or_dot_is_refused(name, char, leading):
    _refusal(_node, char + name if leading else name + char)


@PROPERTY
@given(model_refs)
def test_every_well_formed_model_ref_is_accepted_unchanged(ref):
    assert check_model_ref(ref) == ref


@PROPERTY
@given(_inserted(st.text(), st.sampled_from(SHELL_METACHARACTERS + ASCII_WHITESPACE + ASCII_CONTROLS)))
def test_any_string_with_a_shell_metacharacter_whitespace_or_control_character_is_no_model_ref(text):
    _refusal(_ref, text)


@PROPERTY
@given(_inserted(st.one_of(st.text(), model_refs), st.characters(min_codepoint=0x80)))
def test_any_string_with_a_non_ascii_character_is_no_model_ref(text):
    _refusal(_ref, text)


@PROPERTY
@given(
    st.text(),
    st.sampled_from(["/", ":"]),
    st.sampled_from(["..", ".", "%2e%2e", "%2E.", ".%2e"]),
    st.one_of(st.just(""), st.sampled_from(["/", ":"]).flatmap(lambda sep: st.text().map(sep.__add__))),
)
def test_any_string_with_a_dot_or_dotdot_segment_plain_or_percent_encoded_is_no_model_ref(
    head, sep, dots, tail
):
    _refusal(_ref, head + sep + dots + tail)


@PROPERTY
@given(traversing_refs)
def test_a_well_formed_model_ref_with_a_dot_or_dotdot_segment_spliced_in_is_refused(ref):
    assert "path traversal" in _refusal(_ref, ref).message


@PROPERTY
@given(
    _HTTPS_ORIGIN,
    _inserted(
        st.lists(_SEGMENT, max_size=3).map("/".join),
        st.sampled_from(SHELL_METACHARACTERS + ASCII_WHITESPACE + ASCII_CONTROLS + "\x80\xff").map(
            lambda c: f"%{ord(c):02x}"
        ),
    ),
)
def test_an_https_ref_hiding_a_forbidden_character_behind_percent_encoding_is_refused(origin, path):
    _refusal(_ref, origin + path)


@PROPERTY
@given(_inserted(model_refs, st.sampled_from(["%2f", "%2F", "%5c", "%5C", "%25"])))
def test_a_model_ref_with_a_percent_encoded_separator_or_percent_is_refused(ref):
    _refusal(_ref, ref)


@PROPERTY
@given(catalog_names, st.integers(1, 100))
def test_an_over_long_string_is_no_model_ref(name, extra):
    _refusal(_ref, (name * (MAX_MODEL_REF_CHARS // len(name) + 1 + extra))[: MAX_MODEL_REF_CHARS + extra])


@PROPERTY
@given(
    st.sampled_from([(_ref, MODEL_REF_RULES), (_node, NODE_NAME_RULES), (_prompt, PROMPT_RULES)]),
    st.one_of(st.text(), st.integers(), st.none(), st.floats(), st.lists(st.text(), max_size=2)),
)
def test_refusals_state_a_fixed_rule_and_never_echo_the_input(check_and_rules, value):
    check, rules = check_and_rules
    try:
        check(value)
    except ApiError as error:
        assert error.message in rules
        if isinstance(value, str) and len(value) > 3:
            assume(not any(value in rule for rule in ALL_RULES))
            assert value not in error.message


@PROPERTY
@given(st.integers(), st.integers(-1000, 1000), st.integers(0, 1000))
def test_check_int_accepts_exactly_its_closed_range(value, low, width):
    high = low + width
    if low <= value <= high:
        assert check_int("n", value, low, high) == value
    else:
        _refusal(lambda v: check_int("n", v, low, high), value)


def _spawn_field(name: str) -> Callable[[Any], Any]:
    return lambda value: getattr(SpawnRequest.parse({"model": "default", name: value}), name)


@PROPERTY
@given(
    st.sampled_from([(lambda v: check_port("n", v), 1, 65535), (_spawn_field("device"), 0, 63),
                     (_spawn_field("slots"), 1, 256)]),
    st.integers(-70000, 70000),
)
def test_port_device_id_and_slots_accept_exactly_their_ranges(check_and_range, value):
    check, low, high = check_and_range
    if low <= value <= high:
        assert check(value) == value
    else:
        _refusal(check, value)


@PROPERTY
@given(st.one_of(st.booleans(), st.floats(), st.text(), st.none()))
def test_check_int_refuses_everything_that_is_not_an_int(value):
    _refusal(lambda v: check_int("n", v, -(2**64), 2**64), value)


_PROMPT_TEXT = st.text(
    st.one_of(
        st.characters(exclude_categories=("Cc", "Cs"), exclude_characters=BIDI_OVERRIDES),
        st.sampled_from("\t\n\r"),
    ),
    min_size=1,
    max_size=300,
)


@PROPERTY
@given(_PROMPT_TEXT)
def test_printable_text_with_newlines_and_tabs_is_an_acceptable_prompt(text):
    assert check_text("prompt", text, MAX_PROMPT_CHARS) == text


@PROPERTY
@given(_inserted(_PROMPT_TEXT, st.sampled_from(PROMPT_FORBIDDEN)))
def test_a_prompt_with_a_control_character_or_bidi_override_anywhere_is_refused(text):
    _refusal(_prompt, text)


@PROPERTY
@given(_PROMPT_TEXT, st.integers(1, 1000))
def test_a_prompt_over_the_cap_is_refused(text, extra):
    _refusal(_prompt, (text * (MAX_PROMPT_CHARS // len(text) + 1 + extra))[: MAX_PROMPT_CHARS + extra])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base directory holding a subdirectory, a symlink within it and a symlink out of it."""
    root = tmp_path_factory.mktemp("within")
    base = root / "base"
    (base / "sub").mkdir(parents=True)
    (root / "outside").mkdir()
    (base / "link_in").symlink_to(base / "sub")
    (base / "link_out").symlink_to(root / "outside")
    return base


_NAME = st.text(_ALNUM + "_-", min_size=1, max_size=8)
_PATH_SEGMENTS = st.lists(
    st.one_of(
        st.sampled_from(["..", ".", "", "sub", "link_in", "link_out", "/", "/etc", "outside"]),
        _NAME,
    ),
    max_size=8,
)


@PROPERTY
@given(_PATH_SEGMENTS, st.booleans(), st.booleans())
def test_check_path_within_never_returns_a_path_outside_its_base(sandbox, segments, absolute, as_path):
    text = "/".join(segments)
    if absolute:
        text = f"{sandbox}/{text}"
    assume(text)
    root = sandbox.resolve()
    expected_inside = Path(os.path.realpath(root / text)).is_relative_to(root)
    try:
        resolved = check_path_within("path", sandbox, Path(text) if as_path else text)
    except ApiError as error:
        assert (error.status, not expected_inside) == (400, True)
    else:
        assert resolved.is_relative_to(root) and expected_inside
        assert resolved == resolved.resolve()


@PROPERTY
@given(
    st.lists(
        _NAME.filter(lambda n: not n.startswith("link_")),
        min_size=1,
        max_size=6,
    )
)
def test_check_path_within_accepts_plain_names_below_its_base(sandbox, names):
    assert check_path_within("path", sandbox, "/".join(names)) == sandbox.resolve().joinpath(*names)


@PROPERTY
@given(_inserted(st.text(_ALNUM + "/_.-", max_size=20), st.sampled_from(ASCII_CONTROLS)))
def test_check_path_within_refuses_nul_and_control_characters(sandbox, text):
    _refusal(lambda v: check_path_within("path", sandbox, v), text)


_INFERENCE_BODIES: list[tuple[type[RequestBody], dict[str, Any]]] = [
    (TaskRequest, {"model": "default", "prompt": "Once"}),
    (CompletionRequest, {"model": "default", "prompt": "Once"}),
    (ChatCompletionRequest, {"model": "default", "messages": [{"role": "user", "content": "Hi"}]}),
]
_EDGES = [0, 1, 2, -1, 0.0, 1.0, 2.0, -0.0, 5e-324, 1.0000000000000002, 0.9999999999999999, 8192, 8193,
          2**31 - 1, 2**31]
_JSON_VALUES = st.one_of(
    st.sampled_from(_EDGES),
    st.floats(-3, 3, allow_nan=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**53), 2**53),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(0, 1), max_size=1),
)


def _documented(model: type[RequestBody]) -> jsonschema_rs.Validator:
    """A validator of `model`'s body as the served OpenAPI document describes it."""
    document = openapi.document()
    return jsonschema_rs.Draft202012Validator(
        {"$ref": f"#/components/schemas/{model.__name__}", "components": document["components"]}
    )


_VALIDATORS = {model: _documented(model) for model, _ in _INFERENCE_BODIES}


def _accepted(model: type[RequestBody], body: dict[str, Any]) -> bool:
    try:
        model.parse(body)
    except ApiError:
        return False
    return True


@PROPERTY
@given(st.sampled_from(_INFERENCE_BODIES), st.sampled_from(["top_p", "temperature"]), _JSON_VALUES)
def test_the_openapi_schema_of_a_number_field_accepts_exactly_what_the_queen_accepts(route, field, value):
    model, base = route
    body = {**base, field: value}
    assert _VALIDATORS[model].is_valid(body) == _accepted(model, body)


@PROPERTY
@given(st.sampled_from(_INFERENCE_BODIES), st.sampled_from(["max_tokens", "seed"]), _JSON_VALUES)
def test_the_openapi_schema_of_an_integer_field_accepts_what_the_queen_accepts_but_whole_floats(
    route, field, value
):
    """JSON Schema counts `1.0` as an integer; the queen, as before, takes only `1`."""
    model, base = route
    body = {**base, field: value}
    if isinstance(value, float) and value.is_integer():
        assert not _accepted(model, body)
    else:
        assert _VALIDATORS[model].is_valid(body) == _accepted(model, body)


@PROPERTY
@given(st.sampled_from(_INFERENCE_BODIES), st.floats(-0.5, 1.5, allow_nan=False))
def test_the_openapi_schema_of_top_p_accepts_exactly_the_closed_range_the_queen_accepts(route, top_p):
    model, base = route
    body = {**base, "top_p": top_p}
    assert _VALIDATORS[model].is_valid(body) == _accepted(model, body) == (0 <= top_p <= 1)
