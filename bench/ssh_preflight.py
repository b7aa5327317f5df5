"""SSH preflight time: rbee's Fabric preflight vs the OpenSSH client doing the same work, same run.

Starts a real sshd on a loopback port and, in interleaved rounds, times:
- rbee: `SshPreflight.check_blocking` (connect, host-key check, auth, 3 latency probes,
  `<install>/bin/rbee --version`);
- OpenSSH: one `ssh` process running `echo` three times and `rbee --version` in one session
  (BatchMode, the same key, a known_hosts file with the server's key).
Prints the medians and the ratio of rbee to OpenSSH.

Run: .venv/bin/python bench/ssh_preflight.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rbee.common.tunables import SshTimings
from rbee.queen.nodes.node_registry import NodeSpec
from rbee.queen.nodes.ssh import KnownHosts, SshConnector
from rbee.queen.nodes.ssh_preflight import SshPreflight
from rbee.testing.sshd import Sshd, generate_key


def _openssh(server: Sshd, key: Path, known: Path, install: Path) -> float:
    script = f"echo p; echo p; echo p; {install}/bin/rbee --version"
    started = time.perf_counter()
    subprocess.run(
        ["ssh", "-p", str(server.port), "-i", str(key), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes", "-o", "ControlMaster=no",
         f"{server.user}@127.0.0.1", script],
        check=True, capture_output=True,
    )
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rbee-bench-ssh-") as tmp:
        root = Path(tmp)
        key = generate_key(root / "id_ed25519")
        server = Sshd(root / "sshd", [key]).start()
        try:
            known = root / "known_hosts"
            known.write_text(server.known_hosts_line())
            install = root / "install"
            (install / "bin").mkdir(parents=True)
            (install / "bin" / "rbee").symlink_to(Path(sys.executable).with_name("rbee"))
            spec = NodeSpec("bench", "127.0.0.1", server.port, server.user, str(key), str(install))
            preflight = SshPreflight(SshConnector(KnownHosts(known), SshTimings()))
            rbee_ms, ssh_ms = [], []
            for _ in range(args.rounds):
                started = time.perf_counter()
                preflight.check_blocking(spec)
                rbee_ms.append((time.perf_counter() - started) * 1000)
                ssh_ms.append(_openssh(server, key, known, install))
        finally:
            left = server.stop()
    rbee, ssh = statistics.median(rbee_ms), statistics.median(ssh_ms)
    print(f"rounds: {args.rounds}")
    for name, median, samples in (("rbee SSH preflight (Fabric)", rbee, rbee_ms),
                                   ("OpenSSH client, same commands", ssh, ssh_ms)):
        print(f"{name}: median {median:.0f} ms (min {min(samples):.0f}, max {max(samples):.0f})")
    print(f"ratio rbee / OpenSSH: {rbee / ssh:.2f}")
    return 1 if left else 0


if __name__ == "__main__":
    raise SystemExit(main())
