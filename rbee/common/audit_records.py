"""The audit log's on-disk format, shared by its writer and its verifier.

A log is a directory of JSON Lines segments (`audit-000001.jsonl`, …). Each record carries
`seq` (from 1, continuous across segments and restarts), `ts`, `event`, the caller's fields,
`prev` (the previous record's hash, GENESIS for the first) and `hash` (SHA-256 of the
canonical JSON of the record without `hash`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
SEGMENT_PATTERN = re.compile(r"^audit-(\d{6,})\.jsonl$")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def segment_name(number: int) -> str:
    """The file name of segment `number` (`audit-000001.jsonl` for 1)."""
    return f"audit-{number:06d}.jsonl"


def segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files of `directory` as (number, path), in numeric order."""
    found = []
    for entry in directory.iterdir():
        match = SEGMENT_PATTERN.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def canonical(record: dict[str, Any]) -> bytes:
    """The canonical JSON of `record` (sorted keys, no spaces, UTF-8): what its hash covers."""
    return _CANONICAL.encode(record).encode("utf-8")


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of `record` without its `hash` key."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        raise ValueError("duplicate key")
    return record


def parse(line: bytes) -> dict[str, Any]:
    """The record on one line (without its newline); ValueError when it is not a JSON object."""
    record = json.loads(line, object_pairs_hook=_reject_duplicates)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def shape_problem(record: dict[str, Any]) -> str | None:
    """Why `record` is not shaped like an audit record, or None."""
    seq = record.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        return "malformed record: 'seq' missing or not a positive integer"
    for key in ("ts", "event"):
        if not isinstance(record.get(key), str):
            return f"malformed record: '{key}' missing or not a string"
    for key in ("prev", "hash"):
        if not isinstance(record.get(key), str) or not _HEX64.match(record[key]):
            return f"malformed record: '{key}' missing or not 64 hex digits"
    return None


def hash_matches(record: dict[str, Any]) -> bool:
    """True when the record's `hash` is the hash of the rest of it."""
    try:
        return record_hash(record) == record["hash"]
    except ValueError:
        return False
