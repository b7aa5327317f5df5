"""`make demo`: start a local cluster, stream a real answer from the default model, stop cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from rbee.common.config_env import default_data_dir
from rbee.common.ports import free_port
from rbee.testing.cluster import Daemon

PROMPT = "The three most useful things to know about honey bees are"


def main() -> int:
    """Run `rbee up`, then `rbee infer --model default`, then stop everything."""
    logs = Path(tempfile.mkdtemp(prefix="rbee-demo-"))
    port = free_port()
    up = Daemon(
        ["up", "--port", str(port), "--hive-port", str(free_port()),
         "--data-dir", str(default_data_dir())],
        f"http://127.0.0.1:{port}", "/health", logs / "rbee-up.log",
    )
    print(f"demo: starting `rbee up` on port {port} (logs in {logs})", flush=True)
    up.start()
    try:
        up.wait_healthy(timeout=60)
        print(f"demo: streaming from the default model (Gemma 3 270M)\n\n{PROMPT}", end="", flush=True)
        infer = subprocess.run(
            [sys.executable, "-m", "rbee", "infer", "--queen", up.base_url, "--model", "default",
             "--prompt", PROMPT, "--max-tokens", "96", "--temperature", "0.7", "--stats"],
            check=False,
        )
    finally:
        survivors = up.stop(signal.SIGTERM)
    if survivors:
        print(f"demo: processes outlived the cluster and were killed: {survivors}", file=sys.stderr)
        return 1
    print("\ndemo: cluster stopped, no rbee process left", flush=True)
    return infer.returncode


if __name__ == "__main__":
    sys.exit(main())
