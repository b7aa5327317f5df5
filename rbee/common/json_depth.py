"""JSON parsing that refuses deep nesting before the parser recurses.

Python's `json` recurses once per nested array or object: 50,000 levels raise RecursionError
(a 500 and a traceback) instead of an answer. `nesting` measures the depth of a text with
linear, C-speed byte operations only (no regular expression to backtrack, no per-byte Python
loop below the depth itself), so a hostile megabyte costs milliseconds.
"""

from __future__ import annotations

import json
from itertools import accumulate
from typing import Any

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SIGNED = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
"""Opening brackets to +1 and closing ones to -1 (0xff read as a signed byte)."""


class JsonTooDeep(ValueError):
    """A JSON text nested deeper than allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels")
        self.limit = limit


def nesting(text: bytes | str) -> int:
    """The deepest nesting of arrays and objects in a JSON text, brackets inside strings left out
    (for text that is not JSON, an estimate: the parser refuses it anyway)."""
    raw = _bytes(text)
    # Escapes pair up left to right, so dropping `\\` and then `\"` leaves only the quotes that
    # open and close strings; every other piece of a split on them lies outside a string.
    outside = b"".join(raw.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2])
    steps = outside.translate(_SIGNED, _NOT_BRACKETS)
    if not steps:
        return 0
    return max(0, max(accumulate(memoryview(steps).cast("b"))))


def check_nesting(text: bytes | str, limit: int) -> None:
    """Raise JsonTooDeep when `text` nests deeper than `limit`."""
    raw = _bytes(text)
    if raw.count(b"[") + raw.count(b"{") > limit and nesting(raw) > limit:
        raise JsonTooDeep(limit)


def _bytes(text: bytes | str) -> bytes:
    return text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text


def loads(text: bytes | str, limit: int) -> Any:
    """`json.loads(text)`, refusing nesting deeper than `limit` with JsonTooDeep (a ValueError)."""
    check_nesting(text, limit)
    return json.loads(text)
