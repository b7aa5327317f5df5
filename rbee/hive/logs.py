"""The hive's log files: its own and each worker's, read as a tail and followed as they grow."""

from __future__ import annotations

import os
from pathlib import Path

from rbee.hive.supervisor import WorkerSupervisor

HIVE_SOURCE = "hive"
_BLOCK = 64 * 1024


def tail(path: Path, count: int) -> tuple[list[str], int]:
    """The last `count` lines of a file and the offset just past them (its size)."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        data = b""
        position = size
        while position > 0 and data.count(b"\n") <= count:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.decode(errors="replace").splitlines()
    return (lines[-count:] if count else []), size


def read_new(path: Path, offset: int) -> tuple[list[str], int]:
    """Complete lines written since `offset`, and the offset after them (0 after a truncation)."""
    size = path.stat().st_size
    if size < offset:
        offset = 0
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(size - offset)
    complete = data[: data.rfind(b"\n") + 1]
    return complete.decode(errors="replace").splitlines(), offset + len(complete)


def log_files(supervisor: WorkerSupervisor, only: str | None) -> dict[str, Path]:
    """Source name → log file: the hive's own log and each live worker's (or just `only`)."""
    folder = supervisor.settings.logs_dir
    names = [HIVE_SOURCE, *(record.worker_id for record in supervisor.list())] if only is None else [only]
    found = {name: folder / f"{name}.log" for name in names}
    return {name: path for name, path in found.items() if path.is_file()}
