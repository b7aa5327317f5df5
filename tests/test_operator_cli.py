"""The pure parts of `rbee show`, `rbee stop` and the client commands' queen options."""

from __future__ import annotations

import argparse
from pathlib import Path

import gguf
import pytest

from rbee.cli import queen_access
from rbee.cli.show import count, size
from rbee.cli.stop import chosen
from rbee.hive.gguf_header import read_header
from rbee.hive.model_facts import file_type_name, model_facts
from rbee.testing.tiny_model import build_tiny_gguf

WORKERS = [
    {"worker_id": "w-1", "model": "default"},
    {"worker_id": "w-2", "model": "default"},
    {"worker_id": "w-3", "model": "hf:acme/tiny:tiny.gguf"},
]


def test_a_worker_id_chooses_that_worker_alone() -> None:
    assert [w["worker_id"] for w in chosen(WORKERS, "w-2")] == ["w-2"]


def test_a_model_name_chooses_every_worker_of_it() -> None:
    assert [w["worker_id"] for w in chosen(WORKERS, "default")] == ["w-1", "w-2"]


def test_a_name_nothing_matches_chooses_no_worker() -> None:
    assert chosen(WORKERS, "w-9") == []


@pytest.mark.parametrize(("value", "shown"), [(999, "999"), (106_496, "106.5K"), (268_098_176, "268.1M"),
                                              (8_030_261_248, "8.0B")])
def test_parameter_counts_read_as_model_cards_write_them(value: int, shown: str) -> None:
    assert count(value) == shown


@pytest.mark.parametrize(("value", "shown"), [(512, "512 B"), (1536, "1.5 KiB"), (3 * 1024**3, "3.0 GiB"),
                                              (5 * 1024**5, "5120.0 TiB")])
def test_sizes_are_in_binary_units(value: int, shown: str) -> None:
    assert size(value) == shown


def test_the_parameter_count_is_the_sum_of_the_tensors_elements(tmp_path: Path) -> None:
    path = build_tiny_gguf(tmp_path / "tiny.gguf")
    expected = sum(int(tensor.n_elements) for tensor in gguf.GGUFReader(path).tensors)
    assert read_header(path).parameter_count == expected


def test_the_facts_name_the_architecture_context_and_template(tmp_path: Path) -> None:
    path = build_tiny_gguf(tmp_path / "tiny.gguf", context_length=4096, chat_template="{{ messages }}")
    facts = model_facts(path)
    assert (facts["architecture"], facts["context_length"], facts["chat_template"]) == \
        ("llama", 4096, "{{ messages }}")


@pytest.mark.parametrize(("number", "name"),
                         [(15, "Q4_K_M"), (0, "F32"), (7, "Q8_0"), (9999, None), ("15", None)])
def test_file_types_are_named_as_llama_cpp_names_them(number: object, name: str | None) -> None:
    assert file_type_name(number) == name


def _parsed(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    queen_access.queen_options(parser)
    return parser.parse_args(argv)


def test_the_queen_url_and_token_file_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBEE_QUEEN_URL", "https://queen.example:8443")
    monkeypatch.setenv("RBEE_TOKEN_FILE", "/etc/rbee/alice.key")
    args = _parsed([])
    assert (args.queen, args.token_file) == ("https://queen.example:8443", Path("/etc/rbee/alice.key"))


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBEE_QUEEN_URL", "https://queen.example:8443")
    args = _parsed(["--queen", "http://127.0.0.1:9999"])
    assert args.queen == "http://127.0.0.1:9999"


def test_without_the_environment_the_local_queen_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RBEE_QUEEN_URL", raising=False)
    monkeypatch.delenv("RBEE_TOKEN_FILE", raising=False)
    args = _parsed([])
    assert (args.queen, args.token_file) == ("http://127.0.0.1:8080", None)
