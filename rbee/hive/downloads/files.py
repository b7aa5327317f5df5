"""A download's files in the models folder: the partial file, its resume validator, hashing,
the finished file's record and free-space checks.

The bytes collect in `<file>.partial` (with the server's ETag beside it in
`<file>.partial.json`); a verified file is renamed into place and gets `<file>.rbee.json`
(ref, digest, size), from which a lost catalog is rebuilt.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, BinaryIO

from rbee.common.errors import ApiError
from rbee.common.validation import check_sha256

GGUF_MAGIC = b"GGUF"
PARTIAL_SUFFIX = ".partial"
META_SUFFIX = ".rbee.json"
_HASH_BLOCK = 4 * 1024 * 1024


def parse_sha256(value: Any, field_name: str = "sha256") -> str | None:
    """An optional hex SHA-256 digest, returned in lower case."""
    return None if value is None else check_sha256(field_name, value)


def partial_of(target: Path) -> Path:
    """Where the bytes of `target` collect until it is complete."""
    return target.with_name(target.name + PARTIAL_SUFFIX)


def metadata_of(target: Path) -> Path:
    """The record written beside a complete download."""
    return target.with_name(target.name + META_SUFFIX)


def _validator_of(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def read_validator(partial: Path) -> str | None:
    """The strong ETag remembered for a partial file, or None."""
    try:
        etag = json.loads(_validator_of(partial).read_text()).get("etag")
    except (OSError, ValueError, AttributeError):
        return None
    return etag if isinstance(etag, str) else None


def write_validator(partial: Path, etag: str | None) -> None:
    """Remember a strong ETag so a resume can ask `If-Range` (a changed file restarts from 0)."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    strong = etag if etag and not etag.startswith("W/") else None
    _validator_of(partial).write_text(json.dumps({"etag": strong}))


def discard(partial: Path) -> None:
    """Delete a partial file and its validator."""
    partial.unlink(missing_ok=True)
    _validator_of(partial).unlink(missing_ok=True)


def finalize(partial: Path, target: Path, ref: str, sha256: str, size: int, record: bool = True) -> None:
    """Make the verified partial file the model: fsync, rename, record where it came from
    (`record`: in `<file>.rbee.json`, unless the catalog keeps the record elsewhere)."""
    with partial.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, target)
    _validator_of(partial).unlink(missing_ok=True)
    if record:
        write_record(metadata_of(target), {"ref": ref, "file": target.name, "sha256": sha256,
                                           "size_bytes": size, "downloaded_at": time.time()})
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_record(meta: Path, record: dict[str, Any]) -> None:
    """Write a JSON record atomically."""
    meta.parent.mkdir(parents=True, exist_ok=True)
    scratch = meta.with_name(meta.name + ".tmp")
    scratch.write_text(json.dumps(record))
    os.replace(scratch, meta)


def read_metadata(target: Path) -> dict[str, Any] | None:
    """The record of a complete download, or None."""
    try:
        record = json.loads(metadata_of(target).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def recorded(target: Path, ref: str, expected: str | None) -> tuple[str, int] | None:
    """(digest, size) of a complete earlier download of `ref` at `target` that fits `expected`."""
    record = read_metadata(target)
    if record is None or record.get("ref") != ref or not target.is_file():
        return None
    sha256 = record.get("sha256")
    if not isinstance(sha256, str) or (expected and sha256 != expected):
        return None
    return sha256, target.stat().st_size


def _hash_into(digest: Any, handle: BinaryIO, length: int) -> None:
    remaining = length
    while remaining > 0:
        block = handle.read(min(_HASH_BLOCK, remaining))
        if not block:
            break
        digest.update(block)
        remaining -= len(block)


def hash_file(path: Path) -> str:
    """Hex SHA-256 of a whole file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        _hash_into(digest, handle, path.stat().st_size)
    return digest.hexdigest()


class Sink:
    """The partial file being appended to, hashed as it grows (used from worker threads).

    Writes are unbuffered, so the file's size is always the count of bytes accepted."""

    def __init__(self, partial: Path, offset: int) -> None:
        partial.parent.mkdir(parents=True, exist_ok=True)
        self._digest = hashlib.sha256()
        self._head = b""
        if offset:
            with partial.open("rb") as existing:
                self._head = existing.read(len(GGUF_MAGIC))
                existing.seek(0)
                _hash_into(self._digest, existing, offset)
        self._file = partial.open("ab" if offset else "wb", buffering=0)
        self.size = offset

    def write(self, block: bytes | bytearray) -> None:
        """Append and hash one block."""
        if len(self._head) < len(GGUF_MAGIC):
            self._head += bytes(block[: len(GGUF_MAGIC) - len(self._head)])
        view = memoryview(block)
        while view:
            written = self._file.write(view) or 0
            self._digest.update(view[:written])
            self.size += written
            view = view[written:]

    def close(self) -> None:
        """Flush to the OS and close."""
        self._file.close()

    def starts_with(self, prefix: bytes) -> bool:
        """True when the file begins with `prefix`."""
        return self._head.startswith(prefix)

    def hexdigest(self) -> str:
        """SHA-256 of everything written (the resumed prefix included)."""
        return self._digest.hexdigest()


def check_disk(folder: Path, required: int | None) -> None:
    """Refuse (507 INSUFFICIENT_DISK) when `required` bytes do not fit in `folder`."""
    if required is None:
        return
    available = shutil.disk_usage(folder).free
    if required > available:
        raise ApiError(507, "INSUFFICIENT_DISK", "not enough free disk space for this model",
                       {"required_bytes": required, "available_bytes": available})


def disk_error(exc: OSError, folder: Path, total: int | None) -> ApiError:
    """The structured error for a failed write: 507 for a full disk, else 500."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return ApiError(500, "MODEL_WRITE_FAILED", "the hive could not write the model file",
                        {"errno": exc.errno})
    return ApiError(507, "INSUFFICIENT_DISK", "the disk filled up during the download",
                    {"required_bytes": total, "available_bytes": shutil.disk_usage(folder).free})
