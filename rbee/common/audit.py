"""Tamper-evident audit log, the writing side: append-only JSON Lines segments chained by SHA-256.

The record format is in `audit_records`, the check (`rbee audit verify`) in `audit_verify`.
Secrets and prompt text are refused by field name; store fingerprints or digests
(`prompt_digest`) instead.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rbee.common.audit_records import (
    GENESIS,
    canonical,
    hash_matches,
    parse,
    segment_name,
    segments,
    shape_problem,
)

TORN_TAIL_EVENT = "audit.torn_tail_removed"

_RESERVED = frozenset({"seq", "ts", "event", "prev", "hash"})
_FORBIDDEN = re.compile("token|secret|password|authorization|apikey|prompt|messages")
_ALLOWED_SUFFIXES = ("_fingerprint", "_sha256", "_digest")
_COUNT_FIELDS = frozenset({"max_tokens", "tokens_out", "prompt_tokens", "completion_tokens", "total_tokens"})
"""Usage counts whose names contain a forbidden word; allowed only with integer values."""
_FIRST_READ = 64 * 1024
_LINE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


Audit = Callable[..., Any]
"""Records one audit event: `audit("task.submitted", task_id=…)` (`AuditLog.append`)."""


def no_audit(event: str, **fields: Any) -> None:
    """An Audit that records nothing (components used without an audit log)."""


class AuditError(RuntimeError):
    """The audit log cannot be opened: another writer holds it, or its newest record is damaged."""


def prompt_digest(text: str) -> str:
    """`sha256:<64 hex>` of the UTF-8 text: what the log stores instead of a prompt."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=1024)
def _name_verdict(name: str) -> str:
    """'ok', 'count' (allowed with an integer value) or 'refused' for a field name."""
    lowered = name.lower()
    if lowered.endswith(_ALLOWED_SUFFIXES):
        return "ok"
    if lowered in _COUNT_FIELDS:
        return "count"
    return "refused" if _FORBIDDEN.search(re.sub(r"[^a-z0-9]", "", lowered)) else "ok"


def _check_names(value: Any, where: str) -> None:
    """Refuse secret- or prompt-like keys at any depth of nested dicts and lists."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if not isinstance(key, str):
                raise ValueError(f"audit field names must be strings, got {type(key).__name__} in {where}")
            verdict = _name_verdict(key)
            if verdict == "refused" or (verdict == "count" and (type(inner) is not int)):
                raise ValueError(f"audit field '{where}{key}' looks like a secret or a prompt; "
                                 f"store a fingerprint or a digest (e.g. '{key}_sha256') instead")
            if isinstance(inner, dict | list | tuple):
                _check_names(inner, f"{where}{key}.")
    elif isinstance(value, list | tuple):
        for inner in value:
            if isinstance(inner, dict | list | tuple):
                _check_names(inner, where)


def _tail(path: Path) -> tuple[bytes | None, bytes]:
    """The last complete line of `path` (None if there is none) and the unterminated bytes after it."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        start, chunk, buf = size, _FIRST_READ, b""
        while True:
            new_start = max(0, start - chunk)
            handle.seek(new_start)
            buf = handle.read(start - new_start) + buf
            start, chunk = new_start, chunk * 2
            last_nl = buf.rfind(b"\n")
            if last_nl == -1:
                if start == 0:
                    return None, buf
                continue
            line_start = buf.rfind(b"\n", 0, last_nl) + 1
            if line_start > 0 or start == 0:
                return buf[line_start:last_nl], buf[last_nl + 1:]


class AuditLog:
    """Appends hash-chained records to `directory`, rotating segments at `max_bytes`.

    One writer per directory: the directory is flock-ed while the log is open, and a second
    AuditLog on it (in any process) raises AuditError.
    """

    def __init__(self, directory: Path, max_bytes: int = 10_000_000, fsync: bool = True) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fd: int | None = None
        if not self.directory.exists():
            self.directory.mkdir(mode=0o700, parents=True)
            os.chmod(self.directory, 0o700)
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(dir_fd)
            raise AuditError(f"another audit log writer holds {self.directory}") from None
        self._dir_fd: int | None = dir_fd
        try:
            torn = self._recover()
            if torn is not None:
                self.append(TORN_TAIL_EVENT, bytes=torn[1], segment=torn[0])
        except BaseException:
            self.close()
            raise

    def _recover(self) -> tuple[str, int] | None:
        """Find where the chain stops, remove a torn tail, open the newest segment for appending.

        Returns (segment name, bytes removed) when a torn tail was removed.
        """
        found = segments(self.directory)
        self._seq, self._prev = 0, GENESIS
        self._number = found[-1][0] if found else 1
        torn = None
        for index, (_, path) in enumerate(reversed(found)):
            line, tail = _tail(path)
            if tail:
                if index > 0:
                    raise AuditError(f"{path.name} ends with an incomplete line but is not the newest "
                                     "segment; run `rbee audit verify`")
                tail_record = self._complete_record(tail)
                if tail_record is not None:
                    with path.open("ab") as handle:
                        handle.write(b"\n")
                    line = tail
                else:
                    os.truncate(path, path.stat().st_size - len(tail))
                    torn = (path.name, len(tail))
            if line is not None:
                self._resume_from(line, path)
                break
        self._open_segment(self._number)
        return torn

    @staticmethod
    def _complete_record(tail: bytes) -> dict[str, Any] | None:
        """The record in an unterminated last line when it is whole (only its newline is missing)."""
        try:
            record = parse(tail)
        except ValueError:
            return None
        return record if shape_problem(record) is None and hash_matches(record) else None

    def _resume_from(self, line: bytes, path: Path) -> None:
        try:
            record = parse(line)
        except ValueError:
            record = None
        if record is None or shape_problem(record) is not None or not hash_matches(record):
            raise AuditError(f"the last record of {path} is damaged; run `rbee audit verify`")
        self._seq, self._prev = record["seq"], record["hash"]

    def _open_segment(self, number: int) -> None:
        path = self.directory / segment_name(number)
        flags = os.O_APPEND | os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(path, flags, 0o600)
        info = os.fstat(fd)
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
        if self.fsync and self._dir_fd is not None:
            os.fsync(self._dir_fd)
        self._fd, self._number, self._size = fd, number, info.st_size

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one record (a single write of the whole line, then fsync) and return it.

        Raises ValueError for a reserved or secret/prompt-like field name, a value that is not
        JSON-serialisable, or a closed log.
        """
        if not isinstance(event, str) or not event:
            raise ValueError("audit event must be a non-empty string")
        reserved = _RESERVED & set(fields)
        if reserved:
            raise ValueError(f"audit field names {sorted(reserved)} are reserved")
        _check_names(fields, "")
        with self._lock:
            if self._fd is None:
                raise ValueError("the audit log is closed")
            record: dict[str, Any] = {"seq": self._seq + 1, "ts": _timestamp(), "event": event,
                                      **fields, "prev": self._prev}
            try:
                record["hash"] = hashlib.sha256(canonical(record)).hexdigest()
            except TypeError as exc:
                raise ValueError(f"audit fields must be JSON-serialisable: {exc}") from None
            line = _LINE.encode(record).encode("utf-8") + b"\n"
            if self._size >= self.max_bytes:
                full = self._fd
                self._open_segment(self._number + 1)
                os.close(full)
            fd = self._fd
            self._write(fd, line)
            self._seq, self._prev = record["seq"], record["hash"]
            if self.fsync:
                os.fsync(fd)
        return record

    def _write(self, fd: int, line: bytes) -> None:
        """Append `line` to `fd`; on failure cut the file back so no partial line stays behind."""
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            os.ftruncate(fd, self._size)
            raise
        self._size += len(line)

    def close(self) -> None:
        """Close the segment and release the directory; later appends raise ValueError."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._dir_fd is not None:
                os.close(self._dir_fd)
                self._dir_fd = None
