"""One model download as everyone sees it: its state, its progress and how it ended.

States: `queued → connecting → downloading → verifying → done`, with `retrying` between
attempts and `failed` at the end of a download that gave up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rbee.common import wire
from rbee.common.errors import ApiError
from rbee.common.model_refs import public_ref


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
    done_before: int = 0
    """Bytes of the job's earlier files (the parts of a multi-part model already here)."""
    planned_total: int | None = None
    """Bytes of all the job's files when the hub listed their sizes (else each answer's size)."""
    attempt_started: tuple[float, int] = (0.0, 0)
    _finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def public_ref(self) -> str:
        """The ref as it may be shown and logged (an https URL without its query string)."""
        return public_ref(self.ref)

    @property
    def finished(self) -> bool:
        """True once done or failed."""
        return self._finished.is_set()

    def to_wire(self) -> dict[str, Any]:
        """JSON form: state and byte counts."""
        wire: dict[str, Any] = {
            "id": self.id,
            "model": self.public_ref,
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

    def event(self) -> wire.DownloadEvent:
        """The progress-stream event for the current state."""
        if self.error is not None:
            err = self.error
            return wire.DownloadFailed(self.id, self.public_ref, err.status, err.code, err.message,
                                       err.details)
        kind = wire.DownloadDone if self.state == "done" else wire.DownloadProgress
        return kind.from_wire(self.to_wire())

    async def wait(self) -> Path:
        """The downloaded file's path once done; raises the job's error when it failed."""
        await self._finished.wait()
        if self.error is not None:
            raise self.error
        assert self.path is not None
        return self.path

    async def watch(self, interval: float) -> AsyncIterator[wire.DownloadEvent]:
        """Events at most every `interval` seconds while something changes, then the final one."""
        last: dict[str, Any] | None = None
        while True:
            event = self.event()
            comparable = {k: v for k, v in event.to_wire().items() if k != "bytes_per_s"}
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
