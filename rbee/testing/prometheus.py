"""A real Prometheus server (Debian's `prometheus` package) as a subprocess on a free loopback port,
for the scenarios that check what it discovers and scrapes. Stopped by its PID like every daemon."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from rbee.common.ports import free_port
from rbee.testing.cluster import http_json, wait_until

READY_TIMEOUT_S = 30.0


def _status(url: str) -> int:
    """The HTTP status of GET `url` (0 when nothing answers); the body is not read."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError):
        return 0


class PrometheusServer:
    """`prometheus --config.file=… --storage.tsdb.path=… --web.listen-address=127.0.0.1:PORT`."""

    def __init__(self, workdir: Path, config: str) -> None:
        self.workdir = workdir / "prometheus"
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "prometheus.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> PrometheusServer:
        """Write the config, start the server and wait until `/-/ready` answers 200."""
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed (make test installs Debian's package)"
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        process = self.process
        ready = wait_until(lambda: process.poll() is not None or _status(f"{self.url}/-/ready") == 200,
                           READY_TIMEOUT_S, 0.1)
        assert ready and process.poll() is None, self.log_path.read_text()[-3000:]
        return self

    def api(self, path: str, **params: str) -> tuple[int, dict[str, Any]]:
        """GET `/api/v1/<path>` with `params`: (status, JSON body)."""
        query = urllib.parse.urlencode(params)
        return http_json(f"{self.url}/api/v1/{path}" + (f"?{query}" if query else ""), timeout=10)

    def active_targets(self) -> list[dict[str, Any]]:
        """The targets Prometheus scrapes now, each with its labels and health."""
        status, body = self.api("targets", state="active")
        return body.get("data", {}).get("activeTargets", []) if status == 200 else []

    def stop(self) -> list[int]:
        """SIGTERM, SIGKILL after 10 s; nothing is left behind."""
        if self.process is None:
            return []
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return []

    def log_tail(self) -> str:
        """The end of the server's log."""
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
