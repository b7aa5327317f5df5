"""Fetching one model file over HTTP(S) for its download job.

Each attempt resumes the partial file with `Range` + `If-Range` (after a reset, a stall or a
hive restart), checks the free disk space before the first byte and hashes while it writes;
transient failures back off exponentially with jitter. The digest is compared with the SHA-256
the source names (given by the client or listed by the hub) or the hub announced
(`X-Linked-Etag`): a mismatch deletes the file and starts over, a final failure deletes the
partial file. A job of several files (a multi-part GGUF) counts its progress over all of them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from rbee.common.errors import ApiError
from rbee.common.tunables import DownloadSettings
from rbee.common.validation import SHA256_HEX
from rbee.hive.downloads.files import (
    GGUF_MAGIC,
    Sink,
    check_disk,
    discard,
    disk_error,
    finalize,
    hash_file,
    partial_of,
    read_validator,
    write_validator,
)
from rbee.hive.downloads.job import DownloadJob
from rbee.hive.model_sources import ModelSource

log = logging.getLogger(__name__)

FLUSH_BYTES = 1024 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class _Retry(Exception):
    """A transient failure: try again (resuming) after a backoff."""


class _Mismatch(Exception):
    """The complete file's digest is not the expected one."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__("checksum mismatch")
        self.expected = expected
        self.actual = actual


class Fetcher:
    """The HTTP side of downloads: one client session, file transfers."""

    def __init__(self, settings: DownloadSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self.bytes_received = 0
        """Bytes received from model sources since the hive started (for its metrics)."""

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                total=None, connect=self.settings.connect_timeout_s, sock_read=self.settings.stall_timeout_s
            )
            self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False, trust_env=True)
        return self._session

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._session is not None:
            await self._session.close()

    async def fetch(
        self, job: DownloadJob, source: ModelSource, target: Path, record: bool = True
    ) -> tuple[str, int]:
        """Download `source` to `target`, retrying by the settings; returns (sha256, size).
        `record`: leave the `.rbee.json` record beside the file."""
        partial = partial_of(target)
        failures = mismatches = 0
        while True:
            job.attempt += 1
            try:
                sha256, size, announced = await self._attempt(job, source, partial)
                expected = source.sha256 or announced
                if expected and sha256 != expected:
                    raise _Mismatch(expected, sha256)
                job.state = "verifying"
                await asyncio.to_thread(finalize, partial, target, job.public_ref, sha256, size, record)
                return sha256, size
            except _Retry as exc:
                progressed = job.bytes_done > job.attempt_started[1]
                failures = 1 if progressed else failures + 1
                if failures > self.settings.retries:
                    await asyncio.to_thread(discard, partial)
                    raise ApiError(502, "MODEL_DOWNLOAD_FAILED",
                                   f"the download failed {failures} times in a row: {exc}",
                                   {"attempts": job.attempt, "reason": str(exc)}) from None
                job.last_error = str(exc)
            except _Mismatch as exc:
                await asyncio.to_thread(discard, partial)
                mismatches += 1
                if mismatches > self.settings.retries:
                    raise ApiError(502, "MODEL_CHECKSUM_MISMATCH",
                                   "the downloaded file does not match its expected SHA-256",
                                   {"expected_sha256": exc.expected, "actual_sha256": exc.actual,
                                    "attempts": job.attempt}) from None
                failures = mismatches
                job.last_error = "checksum mismatch; the file was deleted"
            except ApiError:
                await asyncio.to_thread(discard, partial)
                raise
            delay = self.settings.delay(failures)
            log.warning("download %s attempt %d failed (%s); retrying in %.2f s",
                        job.id, job.attempt, job.last_error, delay)
            job.state = "retrying"
            await asyncio.sleep(delay)

    async def _attempt(
        self, job: DownloadJob, source: ModelSource, partial: Path
    ) -> tuple[str, int, str | None]:
        """One GET: (digest, size, the SHA-256 the hub announced or None)."""
        offset = partial.stat().st_size if partial.exists() else 0
        headers = {"Accept-Encoding": "identity", **source.headers}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            validator = await asyncio.to_thread(read_validator, partial)
            if validator:
                headers["If-Range"] = validator
        job.state, job.bytes_done = "connecting", job.done_before + offset
        job.attempt_started = (time.monotonic(), job.bytes_done)
        try:
            async with self._client().get(source.url, headers=headers) as response:
                if response.status == 416 and offset:
                    return (*await self._complete_or_restart(response, partial, offset), None)
                offset, total = _accept(response, offset, source.from_hub)
                if job.planned_total is None:
                    job.bytes_total = total
                job.bytes_done = job.done_before + offset
                await self._disk(job, partial.parent, partial.parent.mkdir, 0o755, True, True)
                check_disk(partial.parent, None if total is None else total - offset)
                await self._disk(job, partial.parent, write_validator, partial, response.headers.get("ETag"))
                job.state = "downloading"
                job.attempt_started = (time.monotonic(), job.bytes_done)
                digest, size = await self._receive(job, response, partial, offset, total)
                return digest, size, _linked_sha256(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retry(_describe(exc, self.settings.stall_timeout_s)) from exc

    async def _complete_or_restart(
        self, response: aiohttp.ClientResponse, partial: Path, offset: int
    ) -> tuple[str, int]:
        match = re.match(r"^bytes \*/(\d+)$", response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            return await asyncio.to_thread(hash_file, partial), offset
        await asyncio.to_thread(discard, partial)
        raise _Retry("the server refused to resume; starting over")

    async def _receive(
        self, job: DownloadJob, response: aiohttp.ClientResponse, partial: Path, offset: int,
        total: int | None,
    ) -> tuple[str, int]:
        folder = partial.parent
        sink: Sink = await self._disk(job, folder, Sink, partial, offset)
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
                    pending = asyncio.ensure_future(self._disk(job, folder, sink.write, buffer))
                    buffer = bytearray()
        finally:
            try:
                if pending is not None:
                    await pending
                if buffer:
                    await self._disk(job, folder, sink.write, buffer)
            finally:
                await asyncio.to_thread(sink.close)
        if total is not None and sink.size != total:
            raise _Retry(f"the connection closed after {sink.size} of {total} bytes")
        if not sink.starts_with(GGUF_MAGIC):
            raise ApiError(502, "NOT_A_GGUF", "the downloaded file is not a GGUF model")
        return sink.hexdigest(), sink.size

    async def _disk(self, job: DownloadJob, folder: Path, action: Callable[..., Any], *args: Any) -> Any:
        """Run a file operation in a thread; a full disk (of `folder`) becomes 507 INSUFFICIENT_DISK."""
        try:
            return await asyncio.to_thread(action, *args)
        except OSError as exc:
            raise disk_error(exc, folder, job.bytes_total) from exc


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
        if SHA256_HEX.fullmatch(linked):
            return linked.lower()
    return None


def _describe(exc: BaseException, stall_timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no data for {stall_timeout_s:g} s (stalled)"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the connection broke mid-file"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "cannot connect to the model server"
    return f"connection failed ({type(exc).__name__})"
