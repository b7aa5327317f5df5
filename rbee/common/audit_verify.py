"""Verifying an audit log (`rbee audit verify`): prove it intact or name the first bad record.

The chain shows edits, deletions and reordering of records and segments before the newest
record; it cannot show records cut from the end of the log, or a log rewritten wholesale by
someone who recomputes every hash. Copy the newest hash elsewhere to anchor it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rbee.common.audit_records import (
    GENESIS,
    SEGMENT_PATTERN,
    hash_matches,
    parse,
    segment_name,
    segments,
    shape_problem,
)


@dataclass(frozen=True)
class Verdict:
    """The outcome of `verify`."""

    ok: bool
    records: int
    files: int
    first_bad: str | None
    reason: str
    warning: str | None = None


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number from 1, line without newline, whether it ended with a newline)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            terminated = raw.endswith(b"\n")
            yield number, raw[:-1] if terminated else raw, terminated


def _chain_problem(record: dict[str, Any], seq: int, prev: str, gap_hint: str) -> str | None:
    """Why `record` does not follow the record with `seq` and hash `prev`, or None."""
    if record["seq"] <= seq:
        return f"sequence out of order: seq {record['seq']} after seq {seq}"
    if record["prev"] != prev:
        if record["seq"] > seq + 1:
            missing = record["seq"] - seq - 1
            return (f"chain broken: prev does not match; seq jumps from {seq} to {record['seq']} "
                    f"({missing} record{'s' if missing > 1 else ''} missing{gap_hint})")
        return "chain broken: prev does not match"
    if record["seq"] != seq + 1:
        return f"sequence out of order: expected seq {seq + 1}, found seq {record['seq']}"
    return None


def verify(path: Path) -> Verdict:
    """Check every record of a directory of segments, or of one segment file.

    A directory's chain must start at GENESIS with seq 1. A single file is checked on its own:
    its first record is taken as given unless the file is segment 1. An unparseable last line
    without a newline in the newest segment is a crash mid-write: a warning, not a failure.
    Raises FileNotFoundError when `path` does not exist.
    """
    path = Path(path)
    directory = path.is_dir()
    if directory:
        files = segments(path)
        anchored = True
    elif path.exists():
        match = SEGMENT_PATTERN.match(path.name)
        files = [(int(match.group(1)) if match else 0, path)]
        anchored = bool(match) and int(match.group(1)) == 1
    else:
        raise FileNotFoundError(f"no audit log at {path}")
    count = 0
    seq, prev = 0, GENESIS
    warning = None

    def bad(where: str, reason: str) -> Verdict:
        return Verdict(False, count, len(files), where, reason, warning)

    previous_number = 0 if directory else None
    for index, (number, segment) in enumerate(files):
        newest = index == len(files) - 1
        gap_hint = ""
        if previous_number is not None and number != previous_number + 1:
            gap_hint = f"; segment {segment_name(previous_number + 1)} is missing"
        previous_number = number
        for line_no, line, terminated in _lines(segment):
            where = f"{segment.name} line {line_no}"
            try:
                record = parse(line)
            except ValueError as exc:
                if newest and not terminated:
                    warning = (f"the last line of {segment.name} is incomplete ({len(line)} bytes, "
                               "a crash mid-write); it is removed when the log is next opened")
                    break
                return bad(where, "duplicate key" if str(exc) == "duplicate key" else "not JSON")
            problem = shape_problem(record)
            if problem is not None:
                return bad(where, problem)
            if not hash_matches(record):
                return bad(where, "hash mismatch: the record was changed after it was written")
            if count == 0 and not anchored:
                seq, prev = record["seq"] - 1, record["prev"]
            problem = _chain_problem(record, seq, prev, gap_hint)
            if problem is not None:
                return bad(where, problem)
            gap_hint = ""
            seq, prev = record["seq"], record["hash"]
            count += 1
    if count == 0:
        return Verdict(False, 0, len(files), None, "no audit records", warning)
    return Verdict(True, count, len(files), None, "intact", warning)
