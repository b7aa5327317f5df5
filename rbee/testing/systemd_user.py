"""A real systemd user manager for tests, isolated in its own runtime dirs and cgroup.

Recipe from TESTING.md: `/run/systemd/system` must exist; each manager gets a fresh
XDG_RUNTIME_DIR and XDG_CONFIG_HOME; it is moved into its own cgroup subtree before it
execs (else it adopts the machine's root cgroup); it runs under `unshare --mount` so that
credentials work; it is stopped by SIGTERM to its PID and its cgroups and dirs removed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

SYSTEMD = "/lib/systemd/systemd"
CGROUP_HIERARCHIES = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd")
START_TIMEOUT_S = 15.0


def available() -> bool:
    """True when systemd's binary is installed."""
    return Path(SYSTEMD).exists() and shutil.which("systemctl") is not None


class UserManager:
    """One `systemd --user` instance with its own unit folder.

    Its folders go under `base` (default: the temp dir). Units with `PrivateTmp=` need a base
    outside /tmp: they would not see the manager's notify socket there. With `uid`, the manager
    runs as that unprivileged user (as a normal login's would), owning its folders and a
    delegated cgroup; without, it runs as root.
    """

    def __init__(self, base: Path | None = None, uid: int | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rbee-systemd-", dir=base))
        self.uid = uid
        self.runtime_dir = self.root / "runtime"
        self.config_dir = self.root / "config"
        self.unit_dir = self.config_dir / "systemd" / "user"
        self._slice = f"rbee-test-{uuid.uuid4().hex[:8]}.slice"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment for `systemctl --user` against this manager."""
        user = {} if self.uid is None else {"HOME": str(self.root), "USER": pwd.getpwuid(self.uid).pw_name}
        return {
            **os.environ,
            **user,
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "XDG_CONFIG_HOME": str(self.config_dir),
        }

    @property
    def as_user(self) -> list[str]:
        """Command prefix that runs a program as the manager's user (empty when that is root)."""
        if self.uid is None:
            return []
        gid = pwd.getpwuid(self.uid).pw_gid
        return ["setpriv", f"--reuid={self.uid}", f"--regid={gid}", "--clear-groups"]

    def chown(self, *paths: Path) -> None:
        """Give files and folders (recursively) to the manager's user."""
        if self.uid is None:
            return
        gid = pwd.getpwuid(self.uid).pw_gid
        for path in paths:
            for item in [path, *(path.rglob("*") if path.is_dir() else [])]:
                os.chown(item, self.uid, gid, follow_symlinks=False)

    def _cgroup_dirs(self) -> list[Path]:
        name = f"user@{self.uid or 0}.service"
        return [Path(h) / self._slice / name for h in CGROUP_HIERARCHIES if Path(h).is_dir()]

    def _enter_own_cgroup(self) -> None:
        """preexec: move the manager into its own subtree of each hierarchy, delegated to its user."""
        for folder in self._cgroup_dirs():
            folder.mkdir(parents=True, exist_ok=True)
            self.chown(folder)
            (folder / "cgroup.procs").write_text("0")

    def start(self) -> UserManager:
        """Start the manager and wait until `systemctl --user` can talk to it."""
        Path("/run/systemd/system").mkdir(parents=True, exist_ok=True)
        self.runtime_dir.mkdir(mode=0o700, parents=True)
        self.unit_dir.mkdir(parents=True)
        self.chown(self.root)
        # Root's manager needs a private mount namespace for credentials to work; an unprivileged
        # one runs as a real login's would, without (it could not mount anything there).
        isolate = ["unshare", "--mount", "--propagation", "shared"] if self.uid is None else self.as_user
        self._process = subprocess.Popen(
            [*isolate, SYSTEMD, "--user"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=(self.root / "manager.log").open("wb"),
            stderr=subprocess.STDOUT,
            preexec_fn=self._enter_own_cgroup,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"systemd --user exited: {self.log_tail()}")
            if self.systemctl("is-system-running", check=False).stdout.strip() in (
                "running", "degraded", "starting"
            ):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"systemd --user did not come up: {self.log_tail()}")

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `systemctl --user ARGS` against this manager."""
        return subprocess.run(
            [*self.as_user, "systemctl", "--user", *args], env=self.env, capture_output=True, text=True,
            timeout=60, check=check,
        )

    def install_unit(self, name: str, text: str) -> None:
        """Write a unit file and reload the manager."""
        (self.unit_dir / name).write_text(text)
        self.systemctl("daemon-reload")

    def show(self, unit: str, prop: str) -> str:
        """One property of a unit, e.g. NRestarts or StatusText."""
        return self.systemctl("show", "-p", prop, "--value", unit).stdout.strip()

    def unit_pids(self, unit: str) -> list[int]:
        """Every process in the unit's control group (the main process and its children)."""
        group = self.show(unit, "ControlGroup")
        for hierarchy in CGROUP_HIERARCHIES:
            procs = Path(hierarchy + group) / "cgroup.procs"
            if group and procs.exists():
                return [int(pid) for pid in procs.read_text().split()]
        return []

    def pids(self) -> list[int]:
        """Every process in the manager's cgroup subtree: the manager and all its units."""
        found: set[int] = set()
        for folder in self._cgroup_dirs():
            for procs in folder.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    found.update(int(pid) for pid in procs.read_text().split())
        return sorted(found)

    def log_tail(self) -> str:
        """The end of the manager's own output."""
        try:
            return (self.root / "manager.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the manager (it stops its units), then remove its cgroups and dirs."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for folder in self._cgroup_dirs():
            for leaf in sorted(folder.parent.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if leaf.is_dir():
                    with contextlib.suppress(OSError):
                        leaf.rmdir()
            with contextlib.suppress(OSError):
                folder.parent.rmdir()
        shutil.rmtree(self.root, ignore_errors=True)
