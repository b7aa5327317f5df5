"""Pure parsing of model refs: the `hf:` grammar, which GGUF files a ref names, public refs."""

from __future__ import annotations

import pytest

from rbee.common.errors import ApiError
from rbee.common.model_refs import has_secret, public_ref
from rbee.common.validation import check_model_ref
from rbee.hive.hf_refs import HfRef, parse_hf, parts_of, quant_matches, select


@pytest.mark.parametrize(("ref", "parsed"), [
    ("hf:org/repo", HfRef("org/repo", None, None)),
    ("hf:org/repo:Q4_K_M", HfRef("org/repo", None, "Q4_K_M")),
    ("hf:org/repo:dir/m.gguf", HfRef("org/repo", None, "dir/m.gguf")),
    ("hf:org/repo@v1.0", HfRef("org/repo", "v1.0", None)),
    ("hf:org/repo@0123456789abcdef0123456789abcdef01234567:m.gguf",
     HfRef("org/repo", "0123456789abcdef0123456789abcdef01234567", "m.gguf")),
])
def test_an_hf_ref_splits_into_repository_revision_and_selector(ref, parsed):
    assert check_model_ref(ref) == ref
    assert parse_hf(ref) == parsed


def test_a_selector_ending_in_gguf_names_a_file_and_anything_else_is_a_quant_tag():
    assert parse_hf("hf:o/r:M.GGUF").names_file
    assert not parse_hf("hf:o/r:Q4_K_M").names_file
    assert parse_hf("hf:o/r").revision_or_default == "main"


@pytest.mark.parametrize("ref", ["hf:org/repo@", "hf:org/repo@v1@v2", "hf:org/repo@a b", "hf:org/repo@../x"])
def test_a_malformed_revision_is_refused(ref):
    with pytest.raises(ApiError):
        check_model_ref(ref)


@pytest.mark.parametrize(("tag", "name", "matches"), [
    ("Q4_K_M", "llama-Q4_K_M.gguf", True),
    ("q4_k_m", "llama.Q4_K_M.gguf", True),
    ("Q4_K_M", "Q4_K_M/llama-Q4_K_M-00001-of-00002.gguf", True),
    ("Q4_K", "llama-Q4_K_M.gguf", False),
    ("Q4_0", "llama-IQ4_0.gguf", False),
    ("Q8_0", "llama-Q4_K_M.gguf", False),
])
def test_a_quant_tag_matches_only_as_a_whole_word_of_the_path(tag, name, matches):
    assert quant_matches(tag, name) is matches


def test_the_parts_of_a_split_gguf_are_named_after_its_first_part():
    assert parts_of("m-00002-of-00003.gguf") == ["m-00001-of-00003.gguf", "m-00002-of-00003.gguf",
                                                 "m-00003-of-00003.gguf"]
    assert parts_of("m.gguf") == ["m.gguf"]


REPO = ["README.md", "m-Q4_K_M.gguf", "m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf",
        "mmproj-m-Q4_K_M.gguf", "m-Q5_K_S-00001-of-00002.gguf"]


def test_a_quant_tag_picks_every_part_of_its_split_model():
    parts = ["m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf"]
    assert select(parse_hf("hf:o/r:q8_0"), REPO) == parts


def test_a_quant_tag_ignores_the_vision_projector():
    assert select(parse_hf("hf:o/r:Q4_K_M"), REPO) == ["m-Q4_K_M.gguf"]


def test_a_split_model_missing_a_part_is_not_a_candidate():
    with pytest.raises(ApiError) as caught:
        select(parse_hf("hf:o/r:Q5_K_S"), REPO)
    assert caught.value.code == "MODEL_QUANT_NOT_FOUND"


def test_a_named_part_brings_its_siblings_and_a_missing_file_is_not_found():
    assert select(parse_hf("hf:o/r:m-Q8_0-00002-of-00002.gguf"), REPO)[0] == "m-Q8_0-00001-of-00002.gguf"
    with pytest.raises(ApiError) as caught:
        select(parse_hf("hf:o/r:absent.gguf"), REPO)
    assert (caught.value.status, caught.value.code) == (404, "MODEL_DOWNLOAD_NOT_FOUND")


def test_no_selector_takes_the_only_model_and_refuses_a_choice_between_several():
    assert select(parse_hf("hf:o/r"), ["a-00001-of-00002.gguf", "a-00002-of-00002.gguf", "mmproj.gguf"]) == [
        "a-00001-of-00002.gguf", "a-00002-of-00002.gguf"]
    with pytest.raises(ApiError) as caught:
        select(parse_hf("hf:o/r"), REPO)
    assert (caught.value.status, caught.value.code) == (400, "MODEL_FILE_AMBIGUOUS")
    assert caught.value.details["files"] == ["m-Q4_K_M.gguf", "m-Q8_0-00001-of-00002.gguf"]


def test_a_quant_tag_several_models_have_is_ambiguous():
    with pytest.raises(ApiError) as caught:
        select(parse_hf("hf:o/r:Q4_K_M"), ["a-Q4_K_M.gguf", "b-Q4_K_M.gguf"])
    assert (caught.value.status, caught.value.code) == (400, "MODEL_QUANT_AMBIGUOUS")


SIGNED = ("https://bucket.s3.amazonaws.com/m.gguf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
          "&X-Amz-Credential=AKIA%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=ab12")


def test_a_pre_signed_https_link_is_accepted_and_shown_without_its_query():
    assert check_model_ref(SIGNED) == SIGNED
    assert public_ref(SIGNED) == "https://bucket.s3.amazonaws.com/m.gguf"
    assert has_secret(SIGNED) and not has_secret("hf:o/r") and public_ref("hf:o/r") == "hf:o/r"


@pytest.mark.parametrize("ref", ["https://h/m.gguf?a=%0a", "https://h/m.gguf?a=b c", "https://h/m.gguf?a=<x>",
                                 "https://h/m.gguf?" + "a" * 5000, "hf:o/r?x=1", "https://h/../m.gguf?a=1"])
def test_a_query_with_control_or_unsafe_characters_or_a_bad_path_is_refused(ref):
    with pytest.raises(ApiError) as caught:
        check_model_ref(ref)
    assert caught.value.status == 400 and "a" * 50 not in caught.value.message
