"""The hive's downloads: one running job per model ref, each in its own task, plus the recently
finished ones, and the counts the hive's metrics show."""

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
from rbee.common.validation import check_path_within
from rbee.hive.downloads.fetch import Fetcher
from rbee.hive.downloads.files import recorded
from rbee.hive.downloads.job import DownloadJob
from rbee.hive.model_sources import locate

log = logging.getLogger(__name__)

FINISHED_JOBS_KEPT = 256

Register = Callable[[str, Path], object]
"""Called (in a thread) with the ref and the final path once a file is complete and verified."""


class Downloader:
    """Starts and tracks download jobs: one running job per model ref."""

    def __init__(self, models_dir: Path, settings: DownloadSettings) -> None:
        self.models_dir = models_dir
        self.settings = settings
        self._fetcher = Fetcher(models_dir, settings)
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

    async def expand(self, ref: str) -> str:
        """`hf:org/repo` → `hf:org/repo:file` for the repository's only GGUF; other refs unchanged."""
        return await self._fetcher.expand(ref)

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
        await self._fetcher.close()

    async def _run(self, job: DownloadJob, register: Register) -> None:
        started = time.monotonic()
        try:
            source = locate(job.ref, self.settings.hub)
            target = check_path_within("model", self.models_dir, str(source.relative_path))
            found = await asyncio.to_thread(recorded, target, job.ref, job.expected_sha256)
            if found is not None:
                sha256, size = found
            else:
                log.info("download %s of %s started", job.id, job.ref)
                sha256, size = await self._fetcher.fetch(job, source, target)
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
