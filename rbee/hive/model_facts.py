"""What `rbee show` tells of a model file: its architecture, size in weights, quantisation,
training context and chat template, read from the GGUF header."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from rbee.hive.gguf_header import read_header

FTYPE_PREFIXES = ("LLAMA_FTYPE_MOSTLY_", "LLAMA_FTYPE_ALL_")


@functools.cache
def _file_type_names() -> dict[int, str]:
    """llama.cpp's `general.file_type` numbers → names such as `Q4_K_M` (from its own enum)."""
    import llama_cpp.llama_cpp as engine

    names: dict[int, str] = {}
    for attribute in dir(engine):
        for prefix in FTYPE_PREFIXES:
            if attribute.startswith(prefix):
                names[int(getattr(engine, attribute))] = attribute.removeprefix(prefix)
    return names


def file_type_name(number: object) -> str | None:
    """The quantisation a `general.file_type` value names (None when absent or unknown)."""
    return _file_type_names().get(number) if isinstance(number, int) else None


def model_facts(path: Path) -> dict[str, Any]:
    """The header's facts of the GGUF file at `path` (None for what the header does not say)."""
    header = read_header(path)
    metadata = header.metadata
    architecture = metadata.get("general.architecture")
    template = metadata.get("tokenizer.chat_template")
    return {
        "architecture": architecture if isinstance(architecture, str) else None,
        "display_name": metadata.get("general.name"),
        "parameters": header.parameter_count,
        "file_type": file_type_name(metadata.get("general.file_type")),
        "context_length": metadata.get(f"{architecture}.context_length"),
        "embedding_length": metadata.get(f"{architecture}.embedding_length"),
        "chat_template": template if isinstance(template, str) else None,
    }
