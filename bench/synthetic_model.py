"""Random-weight f16 llama-architecture GGUF models of real shapes, for the GPU benchmark.

The weights are noise and the 32 000-piece SentencePiece-style vocabulary is made up, so the
output is gibberish (the benchmark's streams set `ignore_eos`), but the compute and memory
traffic per token are those of a real model of the shape. Writing is fast and light on RAM:
one block of random f16 values is drawn once and every tensor is a slice of it at its own
offset (tiled where a tensor is larger), streamed to disk one tensor at a time.

Run: python bench/synthetic_model.py 8b /tmp/models     (prints the path)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from rbee.testing.tiny_model import add_vocab

ARCH = "llama"
N_VOCAB = 32000
BLOCK_VALUES = 64 * 1024 * 1024
WEIGHT_SCALE = 0.02
RMS_EPS = 1e-5
CONTEXT_LENGTH = 8192
_SPACE = "\u2581"
"""SentencePiece's mark of a preceding space."""
_WORDS = ("Story", "Once", "upon", "a", "time", "in", "small", "village", "at", "the", "edge", "of", "great",
          "forest", "there", "lived")


@dataclass(frozen=True)
class Shape:
    """The hyperparameters of one model."""

    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    tied_output: bool
    """No `output.weight`: llama.cpp reuses the token embedding as the output head."""

    def tensors(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """(GGUF name, numpy shape `(out, in)`) of every tensor, in file order."""
        kv = self.n_embd // self.n_head * self.n_head_kv
        yield "token_embd.weight", (N_VOCAB, self.n_embd)
        yield "output_norm.weight", (self.n_embd,)
        if not self.tied_output:
            yield "output.weight", (N_VOCAB, self.n_embd)
        for layer in range(self.n_layer):
            blk = f"blk.{layer}"
            yield f"{blk}.attn_norm.weight", (self.n_embd,)
            yield f"{blk}.attn_q.weight", (self.n_embd, self.n_embd)
            yield f"{blk}.attn_k.weight", (kv, self.n_embd)
            yield f"{blk}.attn_v.weight", (kv, self.n_embd)
            yield f"{blk}.attn_output.weight", (self.n_embd, self.n_embd)
            yield f"{blk}.ffn_norm.weight", (self.n_embd,)
            yield f"{blk}.ffn_gate.weight", (self.n_ff, self.n_embd)
            yield f"{blk}.ffn_up.weight", (self.n_ff, self.n_embd)
            yield f"{blk}.ffn_down.weight", (self.n_embd, self.n_ff)

    def parameters(self) -> int:
        """Parameter count."""
        return sum(int(np.prod(shape)) for _, shape in self.tensors())


SHAPES = {
    "1b": Shape(n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, n_ff=8192, tied_output=True),
    "8b": Shape(n_embd=4096, n_layer=32, n_head=32, n_head_kv=8, n_ff=14336, tied_output=False),
    "tiny-cpu": Shape(n_embd=256, n_layer=4, n_head=8, n_head_kv=4, n_ff=768, tied_output=True),
}


def vocab() -> tuple[list[str], list[float], list[int]]:
    """`(tokens, scores, token_types)`: control tokens, the 256 byte-fallback tokens (those of
    bytes ≥ 0x80 UNUSED, so no lone UTF-8 continuation byte is ever emitted) and made-up
    pieces, closed under prefixes as llama.cpp's SPM tokenizer needs, up to `N_VOCAB`."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        types.append(gguf.TokenType.BYTE if byte < 0x80 else gguf.TokenType.UNUSED)
    letters = "abcdefghijklmnopqrstuvwxyz"
    pieces: dict[str, None] = dict.fromkeys([_SPACE, *letters, *letters.upper(), *"0123456789.,!?"])
    for word in _WORDS:
        for end in range(1, len(word) + 2):
            pieces[(_SPACE + word)[:end]] = None
    stems = [a + b for a in letters for b in letters]
    pieces.update(dict.fromkeys(_SPACE + a for a in letters))
    pieces.update(dict.fromkeys(stems))
    pieces.update(dict.fromkeys(_SPACE + stem for stem in stems))
    for stem in stems:
        pieces.update(dict.fromkeys(stem + c for c in letters))
        pieces.update(dict.fromkeys(_SPACE + stem + c for c in letters))
    chosen = list(pieces)[: N_VOCAB - len(tokens)]
    tokens.extend(chosen)
    types.extend([gguf.TokenType.NORMAL] * len(chosen))
    scores = [0.0] * (len(tokens) - len(chosen)) + [-float(rank) for rank in range(len(chosen))]
    return tokens, scores, [int(t) for t in types]


def _data(shape: tuple[int, ...], block: np.ndarray, offset: int) -> np.ndarray:
    """A tensor's values: ones for a norm, else `block` from `offset` on (tiled if short)."""
    if len(shape) == 1:
        return np.ones(shape, dtype=np.float32)
    count = int(np.prod(shape))
    start = offset % len(block)
    if start + count <= len(block):
        return block[start:start + count].reshape(shape)
    return np.resize(np.concatenate((block[start:], block[:start])), count).reshape(shape)


def _metadata(writer: gguf.GGUFWriter, name: str, shape: Shape) -> None:
    tokens, scores, types = vocab()
    writer.add_name(f"rbee-synthetic-{name}")
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_dimension_count(shape.n_embd // shape.n_head)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    add_vocab(writer, tokens, scores, types)
    writer.add_add_bos_token(True)


def _dtype(dims: tuple[int, ...]) -> np.dtype:
    """f32 for the norms (vectors), f16 for the matrices."""
    return np.dtype(np.float32 if len(dims) == 1 else np.float16)


def _nbytes(dims: tuple[int, ...]) -> int:
    return int(np.prod(dims)) * _dtype(dims).itemsize


def build(name: str, directory: Path, seed: int = 0) -> Path:
    """The model `name` (a key of `SHAPES`) in `directory`, written unless a file of the
    expected size is there already; written atomically, so a cut-short run leaves none."""
    shape = SHAPES[name]
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"synthetic-{name}-f16.gguf"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o644)
    writer = gguf.GGUFWriter(tmp, ARCH)
    try:
        _metadata(writer, name, shape)
        for tensor, dims in shape.tensors():
            writer.add_tensor_info(tensor, dims, _dtype(dims), _nbytes(dims))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        assert writer.fout is not None
        data_start = gguf.GGUFWriter.ggml_pad(writer.fout[0].tell(), writer.data_alignment)
        expected = data_start + sum(gguf.GGUFWriter.ggml_pad(_nbytes(dims), writer.data_alignment)
                                    for _, dims in shape.tensors())
        if target.is_file() and target.stat().st_size == expected:
            return target
        rng = np.random.default_rng(seed)
        block = (rng.standard_normal(min(BLOCK_VALUES, shape.parameters()), dtype=np.float32)
                 * WEIGHT_SCALE).astype(np.float16)
        for index, (_, dims) in enumerate(shape.tensors()):
            writer.write_tensor_data(_data(dims, block, index * 7_919_993))
        writer.close()
        os.replace(tmp, target)
    finally:
        writer.close()
        Path(tmp).unlink(missing_ok=True)
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    print(build(args.shape, args.directory))
