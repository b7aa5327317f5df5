"""Checking that a test leaves no process behind: every live descendant of the test process that
was not there before the test is stopped by its PID and reported."""

from __future__ import annotations

import os
import signal

import psutil


def live_descendants() -> dict[int, str]:
    """PID → command line of every descendant of this process that has not exited."""
    found = {}
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found[child.pid] = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
    return found


def kill_new(before: dict[int, str]) -> dict[int, str]:
    """SIGKILL every live descendant not in `before`, by its PID; returns what was left."""
    left = {pid: cmd for pid, cmd in live_descendants().items() if pid not in before}
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    return left
