"""The on-disk list of a hive's worker PIDs (`<data dir>/workers.json`), so that workers a hive
left behind when it died are stopped when it starts again."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


def save(pid_file: Path, pids: dict[str, int]) -> None:
    """Replace the list with `pids` (worker id → PID), atomically."""
    entries = [{"worker_id": worker_id, "pid": pid} for worker_id, pid in pids.items()]
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries))
    os.replace(tmp, pid_file)


def stop_leftovers(pid_file: Path, grace_s: float) -> None:
    """SIGTERM (SIGKILL after `grace_s`) each listed worker still running, then delete the list."""
    try:
        entries = json.loads(pid_file.read_text())
    except (OSError, ValueError):
        return
    for entry in entries:
        try:
            process = psutil.Process(int(entry["pid"]))
            if str(entry["worker_id"]) not in process.cmdline():
                continue
            log.warning("stopping worker %s (pid %d) left by a previous hive run",
                        entry["worker_id"], process.pid)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace_s)
            except psutil.TimeoutExpired:
                process.kill()
        except (psutil.Error, KeyError, TypeError, ValueError):
            continue
    pid_file.unlink(missing_ok=True)
