"""The hive's downloads: one running job per model ref, each in its own task, plus the recently
finished ones, and the counts the hive's metrics show.

An `https://` model goes to the models folder; an `hf:` model's files go to the standard
Hugging Face cache (`hf_cache`), every part of a multi-part GGUF, one writer per file."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path

from rbee.common.errors import ApiError
from rbee.common.tunables import DownloadSettings
from rbee.common.validation import check_path_within, invalid
from rbee.hive import hf_cache
from rbee.hive.downloads.fetch import Fetcher
from rbee.hive.downloads.files import check_disk, partial_of, recorded
from rbee.hive.downloads.job import DownloadJob
from rbee.hive.hf_hub import Hub, HubPlan
from rbee.hive.model_sources import https_source

log = logging.getLogger(__name__)

FINISHED_JOBS_KEPT = 256

Register = Callable[[str, Path, str], object]
"""Called (in a thread) with the ref, the final path and its SHA-256 once the model is complete
and verified."""


class Downloader:
    """Starts and tracks download jobs: one running job per model ref."""

    def __init__(self, models_dir: Path, settings: DownloadSettings) -> None:
        self.models_dir = models_dir
        self.settings = settings
        self._fetcher = Fetcher(settings)
        self.hub = Hub(settings.hub, settings.connect_timeout_s + settings.stall_timeout_s)
        self._file_locks: dict[Path, asyncio.Lock] = {}
        self._jobs: OrderedDict[str, DownloadJob] = OrderedDict()
        self._active: dict[str, DownloadJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures: Counter[str] = Counter()
        """Failed downloads since the hive started, by error code (for its metrics)."""

    @property
    def active_count(self) -> int:
        """Downloads running now."""
        return len(self._active)

    @property
    def bytes_received(self) -> int:
        """Bytes received from model sources since the hive started (for its metrics)."""
        return self._fetcher.bytes_received

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

    def present(self, ref: str, path: Path, sha256: str | None, size: int) -> DownloadJob:
        """A finished job for a model that is already on disk (`size`: all its files)."""
        job = self._new_job(ref, sha256)
        job.finish(path, sha256 or "", size)
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
        await self._fetcher.close()

    async def _run(self, job: DownloadJob, register: Register) -> None:
        started = time.monotonic()
        try:
            log.info("download %s of %s started", job.id, job.public_ref)
            if job.ref.startswith("hf:"):
                target, sha256, size = await self._fetch_hf(job)
            else:
                target, sha256, size = await self._fetch_https(job)
            await asyncio.to_thread(register, job.ref, target, sha256)
            job.finish(target, sha256, size)
            seconds = time.monotonic() - started
            log.info("download %s of %s done: %d bytes in %.1f s, sha256 %s",
                     job.id, job.public_ref, size, seconds, sha256)
        except ApiError as err:
            log.warning("download %s of %s failed: %s", job.id, job.public_ref, err)
            self.failures[err.code] += 1
            job.fail(err)
        except asyncio.CancelledError:
            job.fail(ApiError(503, "DOWNLOAD_INTERRUPTED",
                              "the hive stopped during the download; ask again to resume it"))
            raise
        except Exception:
            log.exception("download %s of %s crashed", job.id, job.public_ref)
            self.failures["INTERNAL"] += 1
            job.fail(ApiError(500, "INTERNAL", "the download failed unexpectedly; see the hive's log"))
        finally:
            self._active.pop(job.ref, None)

    async def _fetch_https(self, job: DownloadJob) -> tuple[Path, str, int]:
        source, relative = https_source(job.ref, job.expected_sha256)
        target = check_path_within("model", self.models_dir, str(relative))
        async with self._file_lock(target):
            found = await asyncio.to_thread(recorded, target, job.public_ref, job.expected_sha256)
            if found is None:
                found = await self._fetcher.fetch(job, source, target)
        return target, *found

    async def _fetch_hf(self, job: DownloadJob) -> tuple[Path, str, int]:
        """Every file of the model into the Hugging Face cache, then its snapshot links."""
        plan = await asyncio.to_thread(self.hub.plan, job.ref)
        if job.expected_sha256 and len(plan.files) > 1:
            raise invalid("sha256", "cannot be checked for a model of several parts (each part is "
                          "checked against the SHA-256 the hub lists)")
        sizes = [f.size for f in plan.files]
        job.planned_total = job.bytes_total = None if None in sizes else sum(s or 0 for s in sizes)
        await asyncio.to_thread(_check_room, plan)
        digests = []
        for file in plan.files:
            blob = hf_cache.blob_path(plan.repo, file.etag)
            async with self._file_lock(blob):
                if blob.is_file() and file.size in (None, blob.stat().st_size):
                    _check_expected(job, file.sha256)
                    digests.append(file.sha256 or "")
                else:
                    sha256, _ = await self._fetcher.fetch(job, plan.source(file, job.expected_sha256), blob,
                                                          record=False)
                    digests.append(sha256)
            job.done_before += blob.stat().st_size
            await asyncio.to_thread(hf_cache.link, plan.repo, plan.commit, file.filename, file.etag)
        await asyncio.to_thread(hf_cache.record_ref, plan.repo, plan.ref.revision_or_default, plan.commit)
        return plan.pointer, digests[0], job.done_before

    def _file_lock(self, path: Path) -> asyncio.Lock:
        """One writer per file, whichever refs name it (`hf:org/repo` and its file name, say)."""
        return self._file_locks.setdefault(path, asyncio.Lock())


def _check_expected(job: DownloadJob, listed: str | None) -> None:
    """Refuse a file already in the cache whose listed SHA-256 is not the one the client expects."""
    if job.expected_sha256 and listed and job.expected_sha256 != listed:
        raise ApiError(502, "MODEL_CHECKSUM_MISMATCH", "the model's file does not match its expected SHA-256",
                       {"expected_sha256": job.expected_sha256, "actual_sha256": listed})


def _check_room(plan: HubPlan) -> None:
    """Refuse (507) a model whose missing bytes do not fit in the cache's disk."""
    missing = 0
    for file in plan.files:
        blob = hf_cache.blob_path(plan.repo, file.etag)
        if file.size is None or blob.is_file():
            continue
        partial = partial_of(blob)
        missing += file.size - (partial.stat().st_size if partial.exists() else 0)
    folder = plan.repo
    while not folder.exists():
        folder = folder.parent
    check_disk(folder, missing)
