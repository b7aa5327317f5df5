"""Tests for the tiny random-weight GGUF used as a stand-in model in tests."""

from pathlib import Path

from llama_cpp import Llama

from rbee.testing.tiny_model import build_tiny_gguf


def test_tiny_model_loads_and_generates_utf8(tmp_path: Path) -> None:
    """llama.cpp loads the model and generates valid UTF-8 text from it."""
    path = build_tiny_gguf(tmp_path / "tiny.gguf")
    llm = Llama(model_path=str(path), n_ctx=512, verbose=False)
    prompt = llm.tokenize(b"Once upon a time", add_bos=True)

    out: list[int] = []
    for token in llm.generate(prompt, temp=0.8):
        out.append(token)
        if len(out) >= 50:
            break

    assert len(out) == 50
    llm.detokenize(out).decode("utf-8")


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    """Building twice with the same seed yields byte-identical files."""
    first = build_tiny_gguf(tmp_path / "a.gguf", seed=7)
    second = build_tiny_gguf(tmp_path / "b.gguf", seed=7)
    assert first.read_bytes() == second.read_bytes()
