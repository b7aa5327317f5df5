"""The scalar metadata of a GGUF file's header, read without touching its tensors.

`gguf.GGUFReader` parses every array and tensor record in Python: 21 s for Gemma 3 270M on two
cores, far too slow for a preflight before each spawn. This reads only the key/value section,
skipping arrays by their lengths (about 0.2 s for a 262k-token vocabulary).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"GGUF"
_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}
_STRING, _ARRAY = 8, 9
Scalar = int | float | bool | str


class GgufError(ValueError):
    """The file is not a GGUF file this reader understands."""


class _Cursor:
    def __init__(self, data: mmap.mmap) -> None:
        self._data = data
        self.offset = 0

    def unpack(self, fmt: str) -> int | float | bool:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self._data):
            raise GgufError("the GGUF header is truncated")
        (value,) = struct.unpack_from(fmt, self._data, self.offset)
        self.offset += size
        return value

    def string(self) -> str:
        length = int(self.unpack("<Q"))
        if self.offset + length > len(self._data):
            raise GgufError("the GGUF header is truncated")
        raw = self._data[self.offset:self.offset + length]
        self.offset += length
        return raw.decode("utf-8", errors="replace")

    def skip_array(self) -> None:
        kind, count = int(self.unpack("<I")), int(self.unpack("<Q"))
        if kind == _STRING:
            for _ in range(count):
                length = int(self.unpack("<Q"))
                self.offset += length
        elif kind in _SCALARS:
            self.offset += struct.calcsize(_SCALARS[kind]) * count
        else:
            raise GgufError("nested GGUF arrays are not supported")


@dataclass(frozen=True)
class GgufHeader:
    """A GGUF file's scalar metadata and the number of weights its tensors hold."""

    metadata: dict[str, Scalar]
    parameter_count: int


def read_metadata(path: Path) -> dict[str, Scalar]:
    """Every scalar and string key of the header (arrays are skipped)."""
    return read_header(path).metadata


def read_header(path: Path) -> GgufHeader:
    """The key/value section (arrays skipped) and the tensor records' element counts."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] != MAGIC:
            raise GgufError("not a GGUF file")
        cursor = _Cursor(data)
        cursor.offset = 4
        version = cursor.unpack("<I")
        if version not in (2, 3):
            raise GgufError("unsupported GGUF version")
        tensor_count = int(cursor.unpack("<Q"))
        kv_count = int(cursor.unpack("<Q"))
        metadata: dict[str, Scalar] = {}
        for _ in range(kv_count):
            key = cursor.string()
            kind = int(cursor.unpack("<I"))
            if kind == _STRING:
                metadata[key] = cursor.string()
            elif kind == _ARRAY:
                cursor.skip_array()
            elif kind in _SCALARS:
                metadata[key] = cursor.unpack(_SCALARS[kind])
            else:
                raise GgufError("unknown GGUF value type")
        return GgufHeader(metadata, sum(_tensor_elements(cursor) for _ in range(tensor_count)))


def _tensor_elements(cursor: _Cursor) -> int:
    """Read one tensor record (name, dimensions, type, offset); the number of its elements."""
    cursor.string()
    elements = 1
    for _ in range(int(cursor.unpack("<I"))):
        elements *= int(cursor.unpack("<Q"))
    cursor.unpack("<I")
    cursor.unpack("<Q")
    return elements
