"""Validators of client input."""

import pytest

from rbee.common.errors import ApiError
from rbee.common.validation import (
    MAX_PROMPT_CHARS,
    check_http_url,
    check_identifier,
    check_model_ref,
    check_node_name,
    check_path_within,
    check_port,
)
from rbee.common.wire_requests import ChatInference, PromptInference, SamplingParams


def prompt_of(body: dict) -> str:
    return PromptInference.parse(body).prompt


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
    params = SamplingParams.parse({})
    assert params.max_tokens is None and params.temperature == 0.7 and params.seed is None


def test_seed_minus_one_asks_for_a_random_seed_as_llama_server_takes_it():
    assert SamplingParams.parse({"seed": -1}).fixed_seed is None
    assert SamplingParams.parse({"seed": 0}).fixed_seed == 0


def test_a_refused_logit_bias_names_the_field_and_never_echoes_a_token_id():
    with pytest.raises(ApiError) as caught:
        SamplingParams.parse({"logit_bias": {"sec" + "ret": 1}})
    assert caught.value.details["field"] == "logit_bias" and "secret" not in caught.value.message


@pytest.mark.parametrize(
    "body",
    [{"max_tokens": 0}, {"max_tokens": 10**6}, {"max_tokens": True}, {"max_tokens": "5"},
     {"temperature": -0.1}, {"temperature": 2.5}, {"top_p": 1.5}, {"seed": -2},
     {"stop": ["a", "b", "c", "d", "e"]}, {"stop": 7}, {"top_k": -1}, {"top_k": 1001}, {"min_p": 1.1},
     {"repeat_penalty": 0}, {"repeat_penalty": 11}, {"presence_penalty": -2.1}, {"frequency_penalty": 2.1},
     {"logit_bias": {"1": 100.5}}, {"logit_bias": {"-1": 1}}, {"logit_bias": {"1": True}},
     {"logit_bias": [1]}, {"logit_bias": {str(i): 1 for i in range(1025)}}, {"n_probs": 21},
     {"response_format": {"type": "yaml"}}],
)
def test_out_of_range_sampling_fields_are_refused(body):
    with pytest.raises(ApiError) as caught:
        SamplingParams.parse(body)
    assert caught.value.status == 400
    assert caught.value.details["field"].split(".")[0] in body


@pytest.mark.parametrize("prompt", ["", "nul\x00byte", "esc\x1b[31m", "bidi\u202eoverride", 5])
def test_prompts_with_control_characters_or_wrong_types_are_refused(prompt):
    with pytest.raises(ApiError):
        prompt_of({"prompt": prompt})


def test_prompts_may_contain_newlines_and_tabs():
    assert prompt_of({"prompt": "a\n\tb\r\n"}) == "a\n\tb\r\n"


def test_messages_need_known_roles():
    with pytest.raises(ApiError):
        ChatInference.parse({"messages": [{"role": "wizard", "content": "hi"}]})
    messages = ChatInference.parse({"messages": [{"role": "user", "content": "hi"}]}).messages
    dumped = [message.model_dump(exclude_none=True) for message in messages]
    assert dumped == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "ref",
    ["hf:TheBloke/TinyLlama-1.1B-GGUF:tinyllama.Q4_K_M.gguf", "hf:org/repo:Q4_K_M/m.gguf",
     "file:///tmp/x/model.gguf", "https://example.org/models/m.gguf", "https://127.0.0.1:8000/m.gguf",
     "https://example.org/~user/a-b.gguf"],
)
def test_model_refs_of_every_documented_form_are_accepted(ref):
    assert check_model_ref(ref) == ref


@pytest.mark.parametrize("char", list(";|&$`()<>*?!{}[]'\"\\") + [" ", "\t", "\n", "\r", "\x0b", "\x0c"])
def test_model_refs_with_a_shell_metacharacter_or_whitespace_are_refused(char):
    with pytest.raises(ApiError) as caught:
        check_model_ref(f"hf:org/repo:m{char}x.gguf")
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "ref",
    ["hf:org/repo:..", "hf:org/repo:../m.gguf", "hf:org/repo:a/../../m.gguf", "file:///a/../b.gguf",
     "file:///a/./b.gguf", "https://example.org/../m.gguf", "https://example.org/a/..",
     "https://example.org/%2e%2e/m.gguf", "https://example.org/.%2E/m.gguf"],
)
def test_model_refs_with_a_dot_or_dotdot_segment_are_refused(ref):
    with pytest.raises(ApiError, match="path traversal"):
        check_model_ref(ref)


@pytest.mark.parametrize(
    "ref", ["https://example.org/a%2fb.gguf", "https://example.org/a%5Cb.gguf", "https://example.org/%252e%252e/m"]
)
def test_model_refs_with_a_percent_encoded_separator_or_percent_are_refused(ref):
    with pytest.raises(ApiError, match="percent-encode"):
        check_model_ref(ref)


@pytest.mark.parametrize("ref", ["https://example.org/%00.gguf", "https://example.org/%0a.gguf",
                                 "https://example.org/a%20b.gguf", "https://example.org/%c3%b6.gguf"])
def test_model_refs_hiding_control_space_or_non_ascii_behind_percent_encoding_are_refused(ref):
    with pytest.raises(ApiError):
        check_model_ref(ref)


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\n"])
def test_model_refs_with_a_control_character_are_refused_even_at_the_end(char):
    with pytest.raises(ApiError):
        check_model_ref("default" + char)


def test_hf_file_parts_must_be_relative():
    with pytest.raises(ApiError):
        check_model_ref("hf:org/repo:/etc/passwd")


def test_a_node_name_is_returned_in_lowercase():
    assert check_node_name("node", "GPU-Box.Example.ORG") == "gpu-box.example.org"


@pytest.mark.parametrize(
    "name", ["localhost", "gpu-01", "a.b.c", "127.0.0.1", "x" * 63, ".".join(["y" * 63] * 3)]
)
def test_node_names_made_of_rfc_1123_labels_are_accepted(name):
    assert check_node_name("node", name) == name


@pytest.mark.parametrize(
    "name",
    ["", "-lead", "trail-", "a.-b", "under_score", "two words", "a;b", "$(id)", "a.", ".a", "a..b",
     "nöde", "node\n", "tab\there", "x" * 64, ".".join(["y" * 63] * 4), 5, None],
)
def test_node_names_breaking_rfc_1123_are_refused(name):
    with pytest.raises(ApiError) as caught:
        check_node_name("node", name)
    assert caught.value.status == 400 and caught.value.code == "INVALID_REQUEST"


def test_node_name_errors_name_the_field_but_not_the_value():
    with pytest.raises(ApiError) as caught:
        check_node_name("node", "evil_node;reboot")
    assert "'node'" in caught.value.message
    assert "evil" not in caught.value.message and "reboot" not in caught.value.message


def test_a_relative_path_inside_the_base_resolves_under_it(tmp_path):
    assert check_path_within("path", tmp_path, "models/m.gguf") == tmp_path.resolve() / "models" / "m.gguf"


def test_a_dotdot_that_stays_inside_the_base_is_allowed(tmp_path):
    assert check_path_within("path", tmp_path, "a/../b") == tmp_path.resolve() / "b"


def test_an_absolute_path_inside_the_base_is_allowed(tmp_path):
    assert check_path_within("path", tmp_path, tmp_path / "m.gguf") == tmp_path.resolve() / "m.gguf"


@pytest.mark.parametrize("value", ["..", "../x", "a/../../x", "/etc/passwd"])
def test_paths_escaping_the_base_are_refused(tmp_path, value):
    with pytest.raises(ApiError, match="inside its base"):
        check_path_within("path", tmp_path / "base", value)


def test_a_symlink_pointing_outside_the_base_is_refused(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "out").symlink_to(tmp_path)
    with pytest.raises(ApiError, match="inside its base"):
        check_path_within("path", base, "out/secret")


def test_a_symlink_pointing_inside_the_base_is_followed(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert check_path_within("path", tmp_path, "alias/m") == tmp_path.resolve() / "real" / "m"


@pytest.mark.parametrize("value", ["a\x00b", "a\nb", "a\x1bb", "", 7, None])
def test_paths_with_control_characters_or_of_the_wrong_type_are_refused(tmp_path, value):
    with pytest.raises(ApiError):
        check_path_within("path", tmp_path, value)


def test_the_port_check_accepts_its_bounds():
    assert (check_port("n", 1), check_port("n", 65535)) == (1, 65535)


def test_the_port_check_refuses_one_past_its_bounds():
    for value in (0, 65536):
        with pytest.raises(ApiError, match="between"):
            check_port("n", value)


@pytest.mark.parametrize("value", [True, "80", 80.0, None])
def test_numeric_checks_refuse_non_integers(value):
    with pytest.raises(ApiError, match="must be an integer"):
        check_port("port", value)


@pytest.mark.parametrize("char", [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]])
def test_prompts_with_any_bidi_override_or_isolate_are_refused(char):
    with pytest.raises(ApiError):
        prompt_of({"prompt": f"abc{char}def"})


def test_prompts_may_contain_left_to_right_and_right_to_left_marks():
    assert prompt_of({"prompt": "a\u200eb\u200fc"}) == "a\u200eb\u200fc"


def test_prompts_over_the_length_cap_are_refused():
    assert prompt_of({"prompt": "a" * MAX_PROMPT_CHARS})
    with pytest.raises(ApiError, match="at most"):
        prompt_of({"prompt": "a" * (MAX_PROMPT_CHARS + 1)})


def test_identifiers_and_urls_with_a_trailing_newline_are_refused():
    with pytest.raises(ApiError):
        check_identifier("worker_id", "abc\n")
    with pytest.raises(ApiError):
        check_http_url("queen_url", "http://127.0.0.1:8080\n")
