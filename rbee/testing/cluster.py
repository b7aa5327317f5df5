"""Real rbee daemons as subprocesses on free loopback ports, for tests and the demo.

Every process started here is stopped by its PID; `stop` also reports any descendant that
outlived its parent, so callers can prove that no orphan was left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from rbee.common.ports import WORKER_PORT_BLOCK, free_port

STOP_TIMEOUT_S = 30.0


def http_json(url: str, timeout: float = 2.0) -> tuple[int, dict]:
    """GET `url` and return (status, JSON body); (0, {}) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return 0, {}


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is truthy or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def alive(pid: int) -> bool:
    """True while `pid` exists, a zombie included, unless this test process or init is its parent.

    A zombie a live process has not reaped is left behind; one whose parent is this process is
    reaped by its `Popen` handle, and one whose parent died was handed to init, which reaps it:
    both count as gone.
    """
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE or process.ppid() not in (os.getpid(), 1)
    except psutil.NoSuchProcess:
        return False


def kill_survivors(pids: set[int], grace: float) -> list[int]:
    """Wait up to `grace` for `pids` to exit, SIGKILL the ones still alive and return them."""
    wait_until(lambda: not any(alive(p) for p in pids), grace)
    survivors = [pid for pid in pids if alive(pid)]
    for pid in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return survivors


@dataclass
class Daemon:
    """One `rbee <command>` process."""

    args: list[str]
    base_url: str
    health_path: str
    log_path: Path
    hive_url: str | None = None
    process: subprocess.Popen | None = None
    seen_descendants: set[int] = field(default_factory=set)
    prefix: list[str] = field(default_factory=list)
    """Prepended to the command line, e.g. `ip netns exec <ns>` (which execs, so the PID stays real)."""
    probe: Callable[[str], tuple[int, dict]] = http_json
    """How `wait_healthy` GETs the health URL, e.g. a client inside a network namespace."""

    def start(self, env: dict[str, str] | None = None) -> Daemon:
        """Start the process with output appended to its log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "rbee", *self.args],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        return self

    @property
    def health_url(self) -> str:
        """The daemon's public liveness URL."""
        return self.base_url + self.health_path

    @property
    def pid(self) -> int:
        """The daemon's PID."""
        assert self.process is not None, "daemon not started"
        return self.process.pid

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Block until the health endpoint answers 200, or raise with the log's tail."""
        if not wait_until(lambda: self._exited() or self.probe(self.health_url)[0] == 200, timeout):
            raise RuntimeError(f"{self.args[0]} not healthy in {timeout}s:\n{self.log_tail()}")
        if self._exited():
            raise RuntimeError(f"{self.args[0]} exited early:\n{self.log_tail()}")

    def _exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def descendants(self) -> list[int]:
        """PIDs of every live process below this one (also remembered for `stop`)."""
        try:
            pids = [p.pid for p in psutil.Process(self.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pids = []
        self.seen_descendants.update(pids)
        return pids

    def send(self, signum: int) -> None:
        """Send `signum` to the daemon."""
        self.descendants()
        os.kill(self.pid, signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> list[int]:
        """Stop the daemon by PID (SIGKILL after `timeout`); return descendants left alive,
        after killing them so nothing outlives the caller."""
        if self.process is None:
            return []
        self.descendants()
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return kill_survivors(self.seen_descendants, 5.0)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the daemon's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def queen_daemon(
    workdir: Path,
    command: str = "queen",
    extra: list[str] | None = None,
    ports: tuple[int, int] | None = None,
) -> Daemon:
    """A queen (or `rbee up`) on the given (queen, hive) ports or free ones, data under `workdir`."""
    port, hive_port = ports or (free_port(), free_port())
    args = [
        command,
        "--port", str(port),
        "--hive-port", str(hive_port),
        "--data-dir", str(workdir / "data"),
        "--worker-port-start", str(free_port(block=WORKER_PORT_BLOCK)),
        *(extra or []),
    ]
    daemon = Daemon(args, f"http://127.0.0.1:{port}", "/health", workdir / f"{command}.log")
    daemon.hive_url = f"http://127.0.0.1:{hive_port}"
    return daemon


def hive_daemon(workdir: Path, extra: list[str] | None = None, port: int | None = None) -> Daemon:
    """A hive on `port` (default: a free one), with its data under `workdir`."""
    port = port or free_port()
    args = [
        "hive",
        "--port", str(port),
        "--data-dir", str(workdir / "hive-data"),
        "--worker-port-start", str(free_port(block=WORKER_PORT_BLOCK)),
        *(extra or []),
    ]
    return Daemon(args, f"http://127.0.0.1:{port}", "/v1/health", workdir / "hive.log")


def worker_daemon(workdir: Path, model: Path, slots: int = 1, extra: list[str] | None = None) -> Daemon:
    """A standalone worker serving `model` on a free port."""
    port = free_port()
    args = [
        "worker",
        "--model", str(model),
        "--port", str(port),
        "--worker-id", f"test-{port}",
        "--slots", str(slots),
        *(extra or []),
    ]
    return Daemon(args, f"http://127.0.0.1:{port}", "/health", workdir / f"worker-{port}.log")
