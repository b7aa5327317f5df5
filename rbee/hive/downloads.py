"""Model downloads of the hive: one job per model, resumed with HTTP Range, retried, verified.

A job owns its transfer: it writes `<file>.partial` (with the server's ETag beside it in
`<file>.partial.json`), resumes with `Range` + `If-Range` after a reset, a stall or a hive
restart, backs off exponentially with jitter between attempts, checks the free disk space
before the first byte, hashes while it writes and compares with the SHA-256 it was given or
the hub announced (`X-Linked-Etag`). A mismatch deletes the file and starts over; a final
failure deletes the partial file. A finished file gets `<file>.rbee.json` (ref, digest, size),
from which a lost catalog is rebuilt.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import random
import re
import shutil
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from rbee.common.errors import ApiError
from rbee.common.http import raise_for_error
from rbee.common.tunables import Timings
from rbee.common.validation import check_model_ref, check_path_within, invalid
from rbee.hive.model_sources import HubSettings, ModelSource, listing_url, locate, only_gguf, split_hf

log = logging.getLogger(__name__)

FLUSH_BYTES = 1024 * 1024
JITTER = 0.2
FINISHED_JOBS_KEPT = 256
GGUF_MAGIC = b"GGUF"
PARTIAL_SUFFIX = ".partial"
META_SUFFIX = ".rbee.json"
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})

Register = Callable[[str, Path], object]
"""Called (in a thread) with the ref and the final path once a file is complete and verified."""


def parse_sha256(value: Any, field_name: str = "sha256") -> str | None:
    """An optional hex SHA-256 digest, returned in lower case."""
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise invalid(field_name, "must be 64 hexadecimal characters")
    return value.lower()


def partial_of(target: Path) -> Path:
    """Where the bytes of `target` collect until it is complete."""
    return target.with_name(target.name + PARTIAL_SUFFIX)


def metadata_of(target: Path) -> Path:
    """The record written beside a complete download."""
    return target.with_name(target.name + META_SUFFIX)


def _validator_of(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


@dataclass(frozen=True)
class DownloadSettings:
    """Retry, timeout and hub settings of the downloader."""

    retries: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    stall_timeout_s: float = 30.0
    connect_timeout_s: float = 15.0
    hub: HubSettings = field(default_factory=HubSettings)

    @classmethod
    def load(cls, timings: Timings, hub: HubSettings | None = None) -> DownloadSettings:
        """From the tunables and `RBEE_HF_ENDPOINT` / `HF_TOKEN`."""
        return cls(
            timings.download_retries,
            timings.download_backoff_initial_s,
            timings.download_backoff_max_s,
            timings.download_stall_timeout_s,
            timings.download_connect_timeout_s,
            hub or HubSettings.from_env(),
        )

    def delay(self, failures: int) -> float:
        """Seconds before the next attempt after `failures` (≥1) failures in a row."""
        base = min(self.backoff_initial_s * 2 ** (failures - 1), self.backoff_max_s)
        return base * random.uniform(1 - JITTER, 1 + JITTER)


class _Retry(Exception):
    """A transient failure: try again (resuming) after a backoff."""


class _Mismatch(Exception):
    """The complete file's digest is not the expected one."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__("checksum mismatch")
        self.expected = expected
        self.actual = actual


@dataclass
class DownloadJob:
    """One model being fetched; changed only by its own task, read by everyone."""

    id: str
    ref: str
    expected_sha256: str | None = None
    state: str = "queued"
    bytes_done: int = 0
    bytes_total: int | None = None
    attempt: int = 0
    last_error: str | None = None
    path: Path | None = None
    sha256: str | None = None
    error: ApiError | None = None
    hub_sha256: str | None = None
    attempt_started: tuple[float, int] = (0.0, 0)
    _finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def finished(self) -> bool:
        """True once done or failed."""
        return self._finished.is_set()

    def to_wire(self) -> dict[str, Any]:
        """JSON form: state and byte counts."""
        wire: dict[str, Any] = {
            "id": self.id,
            "model": self.ref,
            "state": self.state,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "attempt": self.attempt,
        }
        if self.state == "downloading":
            since, base = self.attempt_started
            elapsed = time.monotonic() - since
            wire["bytes_per_s"] = int((self.bytes_done - base) / elapsed) if elapsed > 0 else 0
        if self.last_error and self.state == "retrying":
            wire["last_error"] = self.last_error
        if self.path is not None:
            wire.update(path=str(self.path), sha256=self.sha256)
        return wire

    def event(self) -> dict[str, Any]:
        """The progress-stream event for the current state."""
        if self.error is not None:
            err = self.error
            return {"type": "error", "id": self.id, "model": self.ref, "status": err.status,
                    "code": err.code, "message": err.message, "details": err.details}
        return {"type": "done" if self.state == "done" else "progress", **self.to_wire()}

    async def wait(self) -> Path:
        """The downloaded file's path once done; raises the job's error when it failed."""
        await self._finished.wait()
        if self.error is not None:
            raise self.error
        assert self.path is not None
        return self.path

    async def watch(self, interval: float) -> AsyncIterator[dict[str, Any]]:
        """Events at most every `interval` seconds while something changes, then the final one."""
        last: dict[str, Any] | None = None
        while True:
            event = self.event()
            comparable = {k: v for k, v in event.items() if k != "bytes_per_s"}
            if comparable != last:
                yield event
                last = comparable
            if self.finished:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), interval)

    def finish(self, path: Path, sha256: str, size: int) -> None:
        """Mark the job done."""
        self.path, self.sha256 = path, sha256
        self.bytes_done = self.bytes_total = size
        self.state = "done"
        self._finished.set()

    def fail(self, error: ApiError) -> None:
        """Mark the job failed with a structured error."""
        self.error = error
        self.state = "failed"
        self._finished.set()


class Downloader:
    """Starts and tracks download jobs: one running job per model ref."""

    def __init__(self, models_dir: Path, settings: DownloadSettings) -> None:
        self.models_dir = models_dir
        self.settings = settings
        self._jobs: OrderedDict[str, DownloadJob] = OrderedDict()
        self._active: dict[str, DownloadJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.bytes_received = 0
        """Bytes received from model sources since the hive started (for its metrics)."""
        self.failures: Counter[str] = Counter()
        """Failed downloads since the hive started, by error code (for its metrics)."""

    @property
    def active_count(self) -> int:
        """Downloads running now."""
        return len(self._active)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                total=None, connect=self.settings.connect_timeout_s, sock_read=self.settings.stall_timeout_s
            )
            self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False, trust_env=True)
        return self._session

    async def expand(self, ref: str) -> str:
        """`hf:org/repo` → `hf:org/repo:file` for the repository's only GGUF; other refs unchanged."""
        if not ref.startswith("hf:") or split_hf(ref)[2] is not None:
            return ref
        hub = self.settings.hub
        try:
            async with self._client().get(listing_url(ref, hub), headers=hub.headers()) as response:
                if response.status in (401, 403):
                    raise _forbidden(True, response.status)
                if response.status in (404, 410):
                    raise _not_found(response.status)
                await raise_for_error(response, "the hub")
                listing = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiError(502, "MODEL_DOWNLOAD_FAILED", "cannot list the repository's files on the hub",
                           {"reason": type(exc).__name__}) from exc
        return check_model_ref(only_gguf(ref, listing))

    def start(self, ref: str, sha256: str | None, register: Register) -> DownloadJob:
        """The running job for `ref`, or a new one; `register` records the finished file."""
        job = self._active.get(ref)
        if job is not None:
            if sha256 and job.expected_sha256 and sha256 != job.expected_sha256:
                raise ApiError(409, "DOWNLOAD_CONFLICT",
                               "this model is already downloading with another expected SHA-256",
                               {"id": job.id})
            job.expected_sha256 = job.expected_sha256 or sha256
            return job
        job = self._new_job(ref, sha256)
        self._active[ref] = job
        task = asyncio.create_task(self._run(job, register), name=f"download-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def present(self, ref: str, path: Path, sha256: str | None) -> DownloadJob:
        """A finished job for a model that is already on disk."""
        job = self._new_job(ref, sha256)
        job.finish(path, sha256 or "", path.stat().st_size)
        return job

    def job(self, job_id: str) -> DownloadJob:
        """A job by id (running or recently finished)."""
        job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, "DOWNLOAD_NOT_FOUND", "no download with that id is known to this hive")
        return job

    def _new_job(self, ref: str, sha256: str | None) -> DownloadJob:
        job = DownloadJob(f"dl-{uuid.uuid4().hex[:12]}", ref, sha256)
        self._jobs[job.id] = job
        finished = [j for j in self._jobs.values() if j.finished]
        for old in finished[: max(0, len(finished) - FINISHED_JOBS_KEPT)]:
            self._jobs.pop(old.id, None)
        return job

    async def close(self) -> None:
        """Stop every download (partial files stay for a later resume) and the HTTP client."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # -- one job ----------------------------------------------------------------------------

    async def _run(self, job: DownloadJob, register: Register) -> None:
        started = time.monotonic()
        try:
            source = locate(job.ref, self.settings.hub)
            target = check_path_within("model", self.models_dir, str(source.relative_path))
            recorded = await asyncio.to_thread(_recorded, target, job.ref, job.expected_sha256)
            if recorded is not None:
                sha256, size = recorded
            else:
                log.info("download %s of %s started", job.id, job.ref)
                sha256, size = await self._fetch(job, source, target)
            await asyncio.to_thread(register, job.ref, target)
            job.finish(target, sha256, size)
            seconds = time.monotonic() - started
            log.info("download %s of %s done: %d bytes in %.1f s, sha256 %s",
                     job.id, job.ref, size, seconds, sha256)
        except ApiError as err:
            log.warning("download %s of %s failed: %s", job.id, job.ref, err)
            self.failures[err.code] += 1
            job.fail(err)
        except asyncio.CancelledError:
            job.fail(ApiError(503, "DOWNLOAD_INTERRUPTED",
                              "the hive stopped during the download; ask again to resume it"))
            raise
        except Exception:
            log.exception("download %s of %s crashed", job.id, job.ref)
            self.failures["INTERNAL"] += 1
            job.fail(ApiError(500, "INTERNAL", "the download failed unexpectedly; see the hive's log"))
        finally:
            self._active.pop(job.ref, None)

    async def _fetch(self, job: DownloadJob, source: ModelSource, target: Path) -> tuple[str, int]:
        partial = partial_of(target)
        failures = mismatches = 0
        while True:
            job.attempt += 1
            try:
                sha256, size = await self._attempt(job, source, partial)
                expected = job.expected_sha256 or job.hub_sha256
                if expected and sha256 != expected:
                    raise _Mismatch(expected, sha256)
                job.state = "verifying"
                await asyncio.to_thread(_finalize, partial, target, job.ref, sha256, size)
                return sha256, size
            except _Retry as exc:
                progressed = job.bytes_done > job.attempt_started[1]
                failures = 1 if progressed else failures + 1
                if failures > self.settings.retries:
                    await asyncio.to_thread(_discard, partial)
                    raise ApiError(502, "MODEL_DOWNLOAD_FAILED",
                                   f"the download failed {failures} times in a row: {exc}",
                                   {"attempts": job.attempt, "reason": str(exc)}) from None
                job.last_error = str(exc)
            except _Mismatch as exc:
                await asyncio.to_thread(_discard, partial)
                mismatches += 1
                if mismatches > self.settings.retries:
                    raise ApiError(502, "MODEL_CHECKSUM_MISMATCH",
                                   "the downloaded file does not match its expected SHA-256",
                                   {"expected_sha256": exc.expected, "actual_sha256": exc.actual,
                                    "attempts": job.attempt}) from None
                failures = mismatches
                job.last_error = "checksum mismatch; the file was deleted"
            except ApiError:
                await asyncio.to_thread(_discard, partial)
                raise
            delay = self.settings.delay(failures)
            log.warning("download %s attempt %d failed (%s); retrying in %.2f s",
                        job.id, job.attempt, job.last_error, delay)
            job.state = "retrying"
            await asyncio.sleep(delay)

    async def _attempt(self, job: DownloadJob, source: ModelSource, partial: Path) -> tuple[str, int]:
        offset = partial.stat().st_size if partial.exists() else 0
        headers = {"Accept-Encoding": "identity", **source.headers}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            validator = await asyncio.to_thread(_read_validator, partial)
            if validator:
                headers["If-Range"] = validator
        job.state, job.bytes_done = "connecting", offset
        job.attempt_started = (time.monotonic(), offset)
        try:
            async with self._client().get(source.url, headers=headers) as response:
                if response.status == 416 and offset:
                    return await self._complete_or_restart(response, partial, offset)
                offset, total = _accept(response, offset, source.from_hub)
                job.hub_sha256 = job.hub_sha256 or _linked_sha256(response)
                job.bytes_total, job.bytes_done = total, offset
                _check_disk(self.models_dir, None if total is None else total - offset)
                await self._disk(job, _write_validator, partial, response.headers.get("ETag"))
                job.state = "downloading"
                job.attempt_started = (time.monotonic(), offset)
                return await self._receive(job, response, partial, offset)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retry(_describe(exc, self.settings.stall_timeout_s)) from exc

    async def _complete_or_restart(
        self, response: aiohttp.ClientResponse, partial: Path, offset: int
    ) -> tuple[str, int]:
        match = re.match(r"^bytes \*/(\d+)$", response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            return await asyncio.to_thread(_hash_file, partial), offset
        await asyncio.to_thread(_discard, partial)
        raise _Retry("the server refused to resume; starting over")

    async def _receive(
        self, job: DownloadJob, response: aiohttp.ClientResponse, partial: Path, offset: int
    ) -> tuple[str, int]:
        sink: _Sink = await self._disk(job, _Sink, partial, offset)
        buffer = bytearray()
        pending: asyncio.Future[None] | None = None
        try:
            async for data in response.content.iter_any():
                buffer += data
                job.bytes_done += len(data)
                self.bytes_received += len(data)
                if len(buffer) >= FLUSH_BYTES:
                    if pending is not None:
                        await pending
                    pending = asyncio.ensure_future(self._disk(job, sink.write, buffer))
                    buffer = bytearray()
        finally:
            try:
                if pending is not None:
                    await pending
                if buffer:
                    await self._disk(job, sink.write, buffer)
            finally:
                await asyncio.to_thread(sink.close)
        if job.bytes_total is not None and sink.size != job.bytes_total:
            raise _Retry(f"the connection closed after {sink.size} of {job.bytes_total} bytes")
        if not sink.starts_with(GGUF_MAGIC):
            raise ApiError(502, "NOT_A_GGUF", "the downloaded file is not a GGUF model")
        return sink.hexdigest(), sink.size


    async def _disk(self, job: DownloadJob, action: Callable[..., Any], *args: Any) -> Any:
        """Run a file operation in a thread; a full disk becomes 507 INSUFFICIENT_DISK."""
        try:
            return await asyncio.to_thread(action, *args)
        except OSError as exc:
            raise _disk_error(exc, self.models_dir, job.bytes_total) from exc


class _Sink:
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


def _accept(response: aiohttp.ClientResponse, offset: int, from_hub: bool) -> tuple[int, int | None]:
    """Check the answer to a (ranged) GET; returns (offset the body starts at, total size)."""
    status = response.status
    if status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != offset:
            raise _Retry("the server answered a different range than asked for")
        return offset, None if match.group(3) == "*" else int(match.group(3))
    if status == 200:
        return 0, response.content_length
    if status in (401, 403):
        raise _forbidden(from_hub, status)
    if status in (404, 410):
        raise _not_found(status)
    if status in _RETRYABLE:
        raise _Retry(f"the server answered HTTP {status}")
    raise ApiError(502, "MODEL_DOWNLOAD_FAILED", f"the model server answered HTTP {status}",
                   {"upstream_status": status})


def _forbidden(from_hub: bool, status: int) -> ApiError:
    hint = (" For a gated Hugging Face repository accept its terms and give the hive HF_TOKEN."
            if from_hub else "")
    return ApiError(403, "MODEL_DOWNLOAD_FORBIDDEN",
                    f"the model server refused access (HTTP {status}).{hint}", {"upstream_status": status})


def _not_found(status: int) -> ApiError:
    return ApiError(404, "MODEL_DOWNLOAD_NOT_FOUND", f"the model server has no such file (HTTP {status})",
                    {"upstream_status": status})


def _linked_sha256(response: aiohttp.ClientResponse) -> str | None:
    """The SHA-256 the Hugging Face hub announces for an LFS file (on the redirect or the answer)."""
    for answer in (*response.history, response):
        linked = answer.headers.get("X-Linked-Etag", "").strip('"')
        if _SHA256.fullmatch(linked):
            return linked.lower()
    return None


def _check_disk(folder: Path, required: int | None) -> None:
    if required is None:
        return
    available = shutil.disk_usage(folder).free
    if required > available:
        raise ApiError(507, "INSUFFICIENT_DISK", "not enough free disk space for this model",
                       {"required_bytes": required, "available_bytes": available})


def _disk_error(exc: OSError, folder: Path, total: int | None) -> ApiError:
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return ApiError(500, "MODEL_WRITE_FAILED", "the hive could not write the model file",
                        {"errno": exc.errno})
    return ApiError(507, "INSUFFICIENT_DISK", "the disk filled up during the download",
                    {"required_bytes": total, "available_bytes": shutil.disk_usage(folder).free})


def _describe(exc: BaseException, stall_timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no data for {stall_timeout_s:g} s (stalled)"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the connection broke mid-file"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "cannot connect to the model server"
    return f"connection failed ({type(exc).__name__})"


def _hash_into(digest: Any, handle: Any, length: int) -> None:
    remaining = length
    while remaining > 0:
        block = handle.read(min(FLUSH_BYTES * 4, remaining))
        if not block:
            break
        digest.update(block)
        remaining -= len(block)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        _hash_into(digest, handle, path.stat().st_size)
    return digest.hexdigest()


def _read_validator(partial: Path) -> str | None:
    try:
        etag = json.loads(_validator_of(partial).read_text()).get("etag")
    except (OSError, ValueError, AttributeError):
        return None
    return etag if isinstance(etag, str) else None


def _write_validator(partial: Path, etag: str | None) -> None:
    """Remember a strong ETag so a resume can ask `If-Range` (a changed file restarts from 0)."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    strong = etag if etag and not etag.startswith("W/") else None
    _validator_of(partial).write_text(json.dumps({"etag": strong}))


def _discard(partial: Path) -> None:
    partial.unlink(missing_ok=True)
    _validator_of(partial).unlink(missing_ok=True)


def _finalize(partial: Path, target: Path, ref: str, sha256: str, size: int) -> None:
    """Make the verified partial file the model: fsync, rename, record where it came from."""
    with partial.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, target)
    _validator_of(partial).unlink(missing_ok=True)
    record = {"ref": ref, "file": target.name, "sha256": sha256, "size_bytes": size,
              "downloaded_at": time.time()}
    meta = metadata_of(target)
    scratch = meta.with_name(meta.name + ".tmp")
    scratch.write_text(json.dumps(record))
    os.replace(scratch, meta)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _recorded(target: Path, ref: str, expected: str | None) -> tuple[str, int] | None:
    """(digest, size) of a complete earlier download of `ref` at `target` that fits `expected`."""
    record = read_metadata(target)
    if record is None or record.get("ref") != ref or not target.is_file():
        return None
    sha256 = record.get("sha256")
    if not isinstance(sha256, str) or (expected and sha256 != expected):
        return None
    return sha256, target.stat().st_size


def read_metadata(target: Path) -> dict[str, Any] | None:
    """The record of a complete download, or None."""
    try:
        record = json.loads(metadata_of(target).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
