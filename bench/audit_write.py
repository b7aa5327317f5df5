"""Write cost per event of the audit log against plain JSON-lines appends, fsync on and off.

Baseline: the same event (timestamp, name, fields) serialised with json.dumps and written to a
file opened in append mode, flushed after every line so each event reaches the kernel like the
audit log's (and like logging.FileHandler); no hashing. Ratios compare like with like: audit
without fsync against the baseline without fsync, audit with fsync against baseline with fsync.
Rounds of the four variants are interleaved, in alternating order; each figure is the median of ROUNDS rounds.

Run: .venv/bin/python bench/audit_write.py [DIR]   (DIR: where to write; default a temp dir)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rbee.common.audit import AuditLog

EVENTS = 2_000
FSYNC_EVENTS = 400
ROUNDS = 7
FIELDS = {"method": "POST", "path": "/v1/chat/completions", "remote": "192.168.1.20",
          "token_fingerprint": "a1b2c3", "model": "gemma3-270m", "prompt_sha256": "0" * 64, "max_tokens": 64}


def _audit(directory: Path, events: int, fsync: bool) -> None:
    log = AuditLog(directory, fsync=fsync)
    try:
        for n in range(events):
            log.append("inference.request", n=n, **FIELDS)
    finally:
        log.close()


def _baseline(directory: Path, events: int, fsync: bool) -> None:
    with (directory / "plain.jsonl").open("a", encoding="utf-8") as handle:
        for n in range(events):
            ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            handle.write(json.dumps({"ts": ts, "event": "inference.request", "n": n, **FIELDS},
                                    separators=(",", ":"), ensure_ascii=False) + "\n")
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())


VARIANTS: tuple[tuple[str, Callable[[Path, int, bool], None], int, bool], ...] = (
    ("baseline append, no fsync", _baseline, EVENTS, False),
    ("audit log, no fsync", _audit, EVENTS, False),
    ("baseline append, fsync", _baseline, FSYNC_EVENTS, True),
    ("audit log, fsync", _audit, FSYNC_EVENTS, True),
)


def _per_event_us(write: Callable[[Path, int, bool], None], root: Path, events: int, fsync: bool) -> float:
    """µs per event of one round, written into a fresh directory under `root`."""
    directory = Path(tempfile.mkdtemp(dir=root))
    try:
        started = time.perf_counter()
        write(directory, events, fsync)
        return (time.perf_counter() - started) / events * 1e6
    finally:
        shutil.rmtree(directory)


def main() -> int:
    """Measure the four variants, rounds interleaved, and print µs/event and like-for-like ratios."""
    root = Path(tempfile.mkdtemp(prefix="rbee-audit-bench-", dir=sys.argv[1] if len(sys.argv) > 1 else None))
    try:
        samples: dict[str, list[float]] = {label: [] for label, *_ in VARIANTS}
        for round_no in range(ROUNDS):
            for label, write, events, fsync in VARIANTS if round_no % 2 == 0 else VARIANTS[::-1]:
                samples[label].append(_per_event_us(write, root, events, fsync))
        cost = {label: statistics.median(values) for label, values in samples.items()}
        print(f"audit write cost: {EVENTS} events ({FSYNC_EVENTS} with fsync) per round, "
              f"median of {ROUNDS} interleaved rounds, in {root}")
        for label, value in cost.items():
            print(f"  {label:<26} {value:8.1f} µs/event")
        for mode in ("no fsync", "fsync"):
            ratio = cost[f"audit log, {mode}"] / cost[f"baseline append, {mode}"]
            print(f"  ratio audit/baseline, {mode + ':':<9} {ratio:.2f}x")
    finally:
        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
