"""A real OpenSSH server on a free loopback port, for tests and benchmarks.

Own config, own host key, key-only auth, `UsePAM no`, `StrictModes no` (TESTING.md). Started in
the foreground (`-D`) so its PID is the process we hold; stopped by that PID, and any
per-connection child still alive afterwards is killed by its PID too.
"""

from __future__ import annotations

import contextlib
import getpass
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from rbee.common.ports import free_port
from rbee.testing.cluster import kill_survivors, wait_until

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
STOP_TIMEOUT_S = 5.0


def generate_key(path: Path) -> Path:
    """Write an ed25519 key pair without passphrase at `path` (+ `.pub`), mode 0600; return `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rbee-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


@dataclass
class Sshd:
    """One sshd listening on `address`:`port` that accepts the public keys in `authorized`."""

    workdir: Path
    authorized: list[Path]
    port: int = field(default_factory=free_port)
    address: str = "127.0.0.1"
    prefix: list[str] = field(default_factory=list)
    """Prepended to sshd's command line, e.g. `ip netns exec <ns>` to serve a test host."""
    user: str = field(default_factory=getpass.getuser)
    sftp: bool = False
    """Also serve the SFTP subsystem (Ansible transfers files with it; rbee's queen never needs it)."""
    process: subprocess.Popen | None = None
    seen_children: set[int] = field(default_factory=set)

    @property
    def host_key(self) -> Path:
        """The server's private host key."""
        return self.workdir / "ssh_host_ed25519_key"

    @property
    def log_path(self) -> Path:
        """sshd's log (`-E`)."""
        return self.workdir / "sshd.log"

    def known_hosts_line(self) -> str:
        """The line a known_hosts file needs to trust this server."""
        key_type, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        host = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{host} {key_type} {key}\n"

    def _config(self) -> Path:
        keys = self.workdir / "authorized_keys"
        keys.write_text("".join(Path(f"{p}.pub").read_text() for p in self.authorized))
        keys.chmod(0o600)
        config = self.workdir / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress {self.address}\nHostKey {self.host_key}\n"
            f"PidFile {self.workdir / 'sshd.pid'}\nAuthorizedKeysFile {keys}\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nAllowUsers {self.user}\n"
            "X11Forwarding no\nAllowTcpForwarding no\nPrintMotd no\nLogLevel VERBOSE\n"
            + (f"Subsystem sftp {SFTP_SERVER}\n" if self.sftp else "")
        )
        return config

    def start(self, timeout: float = 10.0) -> Sshd:
        """Start sshd in the foreground and wait until it listens."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            generate_key(self.host_key)
        config = self._config()
        self.process = subprocess.Popen(
            [*self.prefix, SSHD, "-D", "-f", str(config), "-E", str(self.log_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if not wait_until(lambda: self.process.poll() is not None or self._listening(), timeout, 0.01):
            self.stop()
            raise RuntimeError(f"sshd did not answer on port {self.port}:\n{self._log_tail()}")
        if self.process.poll() is not None:
            raise RuntimeError(f"sshd exited with {self.process.returncode}:\n{self._log_tail()}")
        return self

    def _listening(self) -> bool:
        """sshd logged that it listens (checked without connecting, so the log counts only clients)."""
        with contextlib.suppress(OSError):
            log = self.log_path.read_text(errors="replace")
            return f"Server listening on {self.address} port {self.port}" in log
        return False

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        return "(no log)"

    def _children(self) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(self.process.pid).children(recursive=True)
            self.seen_children.update(p.pid for p in children)

    def stop(self) -> list[int]:
        """SIGTERM by PID (SIGKILL after a grace); kill connection children left behind; return them."""
        if self.process is None:
            return []
        self._children()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return kill_survivors(self.seen_children, 2.0)

    def connections_logged(self) -> int:
        """How many connections sshd has logged (proof that a client did or did not connect)."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace").count("Connection from ")
        return 0
