"""Build a tiny random-weight llama-architecture GGUF model for tests.

The model is real enough for llama.cpp to load, tokenize and generate with it,
but small enough (a few hundred KB, built in milliseconds) to create on the fly
inside a test run. Its output is gibberish drawn from a tiny SentencePiece-style
vocabulary: ``<unk>``/``<s>``/``</s>``, the 256 byte-fallback tokens and a few
dozen common English word pieces.

The byte tokens ``<0x80>``..``<0xFF>`` are typed UNUSED rather than BYTE: with
random weights llama.cpp would otherwise happily sample lone UTF-8 continuation
bytes, producing invalid UTF-8 and making streaming clients stall while they
wait for a character that never completes.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import gguf
import numpy as np

ARCH = "llama"
N_LAYERS = 2
N_EMBD = 64
N_FF = 128
N_HEAD = 4
RMS_EPS = 1e-5
WEIGHT_SCALE = 0.02

UNK_ID = 0
BOS_ID = 1
EOS_ID = 2

# SentencePiece marks a preceding space with U+2581 ("▁").
_SPACE = "\u2581"
_WORDS = (
    "the", "The", "Once", "upon", "a", "time", "there", "was", "little", "girl",
    "boy", "dog", "cat", "and", "she", "he", "they", "to", "of", "in", "it",
    "is", "that", "with", "for", "on", "day", "happy", "big", "saw", "said",
    "play", "hello", "world",
)  # fmt: skip
_PUNCTUATION = (".", ",", "!", "?")
_LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")


def _word_pieces() -> list[str]:
    """Return the NORMAL vocabulary pieces, closed under prefixes.

    llama.cpp's SPM tokenizer builds pieces by merging adjacent symbols one
    character at a time, so ``▁the`` is only reachable if ``▁t`` and ``▁th``
    are in the vocabulary too.
    """
    pieces: dict[str, None] = {_SPACE: None}
    for word in _WORDS:
        piece = _SPACE + word
        for end in range(2, len(piece) + 1):
            pieces[piece[:end]] = None
    pieces.update(dict.fromkeys(_LETTERS + _PUNCTUATION))
    return list(pieces)


def _vocab() -> tuple[list[str], list[float], list[int]]:
    """Return ``(tokens, scores, token_types)`` for the tiny vocabulary."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        # Bytes >= 0x80 only occur inside multi-byte UTF-8 sequences; never emit them alone.
        types.append(gguf.TokenType.BYTE if byte < 0x80 else gguf.TokenType.UNUSED)
    scores = [0.0] * len(tokens)
    for rank, piece in enumerate(_word_pieces()):
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
        scores.append(-float(rank))
    return tokens, scores, [int(t) for t in types]


def _tensors(n_vocab: int, seed: int) -> dict[str, np.ndarray]:
    """Return the model tensors by GGUF name, in numpy ``(out, in)`` layout.

    Attention/FFN matrices get small normal noise, norm weights are ones. There
    is no ``output.weight``, so llama.cpp ties the output head to the embedding.
    """
    rng = np.random.default_rng(seed)

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * WEIGHT_SCALE).astype(np.float32)

    def norm() -> np.ndarray:
        return np.ones(N_EMBD, dtype=np.float32)

    tensors = {
        "token_embd.weight": matrix(n_vocab, N_EMBD),
        "output_norm.weight": norm(),
    }
    for layer in range(N_LAYERS):
        blk = f"blk.{layer}"
        tensors.update(
            {
                f"{blk}.attn_norm.weight": norm(),
                f"{blk}.attn_q.weight": matrix(N_EMBD, N_EMBD),
                f"{blk}.attn_k.weight": matrix(N_EMBD, N_EMBD),
                f"{blk}.attn_v.weight": matrix(N_EMBD, N_EMBD),
                f"{blk}.attn_output.weight": matrix(N_EMBD, N_EMBD),
                f"{blk}.ffn_norm.weight": norm(),
                f"{blk}.ffn_gate.weight": matrix(N_FF, N_EMBD),
                f"{blk}.ffn_up.weight": matrix(N_FF, N_EMBD),
                f"{blk}.ffn_down.weight": matrix(N_EMBD, N_FF),
            }
        )
    return tensors


def add_vocab(writer: gguf.GGUFWriter, tokens: list[str], scores: list[float], types: list[int]) -> None:
    """A SentencePiece-style ("llama") vocabulary with `<unk>`, `<s>` and `</s>` at ids 0, 1, 2."""
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(UNK_ID)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)


def _write(path: str, *, context_length: int, seed: int, chat_template: str | None,
           split_max_tensors: int = 0) -> None:
    """Write the GGUF file to ``path`` (non-atomically); split into `<stem>-0000i-of-0000n.gguf`
    parts of at most `split_max_tensors` tensors each when that is set."""
    tokens, scores, types = _vocab()
    writer = gguf.GGUFWriter(path, ARCH, split_max_tensors=split_max_tensors)
    try:
        writer.add_name("rbee-tiny-random")
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        writer.add_context_length(context_length)
        writer.add_embedding_length(N_EMBD)
        writer.add_block_count(N_LAYERS)
        writer.add_feed_forward_length(N_FF)
        writer.add_head_count(N_HEAD)
        writer.add_head_count_kv(N_HEAD)
        writer.add_layer_norm_rms_eps(RMS_EPS)
        add_vocab(writer, tokens, scores, types)
        if chat_template is not None:
            writer.add_chat_template(chat_template)
        for name, tensor in _tensors(len(tokens), seed).items():
            writer.add_tensor(name, tensor)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def build_tiny_gguf(
    path: str | os.PathLike[str], *, context_length: int = 2048, seed: int = 0,
    chat_template: str | None = None,
) -> pathlib.Path:
    """Write a tiny random-weight llama-architecture GGUF to `path` and return the path.

    The file is deterministic for a given ``seed`` and ``context_length`` and is
    written atomically: readers never see a partially written model. `chat_template` becomes
    its `tokenizer.chat_template` (none by default).
    """
    target = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        _write(tmp, context_length=context_length, seed=seed, chat_template=chat_template)
        os.replace(tmp, target)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return target


def build_split_tiny_gguf(path: str | os.PathLike[str], max_tensors: int) -> list[pathlib.Path]:
    """The tiny model as a multi-part GGUF (`<stem>-00001-of-0000N.gguf`, …) beside `path`, as
    `llama-gguf-split` writes it; returns the parts in order."""
    target = pathlib.Path(path)
    _write(str(target), context_length=2048, seed=0, chat_template=None, split_max_tensors=max_tensors)
    return sorted(target.parent.glob(f"{target.stem}-*-of-*.gguf"))
