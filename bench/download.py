"""Download throughput of the hive vs curl, from the same loopback file server in the same run.

Publishes one GGUF-headed random file in the Hugging Face layout on rbee's loopback file server
(`rbee/testing/file_server.py`) under one repo per round, starts a real hive pointed at it
(`RBEE_HF_ENDPOINT`), and in interleaved rounds times:
- curl: `curl -sfL -o FILE <endpoint>/org/repo/resolve/main/m.gguf` (follows the redirect to the
  bytes, writes the file, nothing else);
- curl + sha256sum: the same, then `sha256sum FILE` (what verifying a download by hand costs);
- the hive: `POST /v1/models/download` of `hf:org/repo:m.gguf` until the progress stream says
  `done` (the transfer, SHA-256 verification against the hub's `X-Linked-Etag`, fsync, rename
  and catalog registration all included).
Prints the median MB/s of each (MB = 10^6 bytes) and the ratios of the hive to both.

Run: .venv/bin/python bench/download.py [--size-mb 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from rbee.testing.cluster import Daemon, hive_daemon
from rbee.testing.file_server import sha256_of
from rbee.testing.http_client import request
from rbee.testing.hub_standin import HubStandIn

MB = 1_000_000


def _write_model(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        handle.write(b"GGUF")
        remaining = size - 4
        while remaining > 0:
            block = os.urandom(min(8 * 1024 * 1024, remaining))
            handle.write(block)
            remaining -= len(block)


def _curl_seconds(url: str, out: Path, verify: bool) -> float:
    started = time.perf_counter()
    subprocess.run(["curl", "-sfL", "-o", str(out), url], check=True, timeout=600)
    if verify:
        subprocess.run(["sha256sum", str(out)], check=True, capture_output=True, timeout=600)
    seconds = time.perf_counter() - started
    out.unlink()
    return seconds


def _hive_seconds(hive_url: str, ref: str) -> float:
    started = time.perf_counter()
    answer = request("POST", f"{hive_url}/v1/models/download", {"model": ref})
    assert answer.status == 202, (answer.status, answer.body)
    url = f"{hive_url}/v1/models/download/progress?id={answer.json()['id']}"
    final: dict = {}
    with urllib.request.urlopen(url, timeout=600) as stream:
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("data:") and line != "data: [DONE]":
                final = json.loads(line[5:])
    seconds = time.perf_counter() - started
    assert final.get("type") == "done", final
    request("POST", f"{hive_url}/v1/models/remove", {"name": ref})
    return seconds


def main() -> None:
    """Measure and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rbee-download-bench-"))
    size = args.size_mb * MB
    source = workdir / "m.gguf"
    _write_model(source, size)
    server = HubStandIn().start()
    hive: Daemon | None = None
    try:
        digest = sha256_of(source)
        refs = [server.add_hf("bench", f"r{i}", "m.gguf", source, digest) for i in range(args.rounds)]
        hive = hive_daemon(workdir)
        hive.start(env={"RBEE_HF_ENDPOINT": server.url, "HF_HOME": str(workdir / "hf-home")})
        hive.wait_healthy()
        results: dict[str, list[float]] = {"curl": [], "curl + sha256sum": [], "hive": []}
        for index, ref in enumerate(refs):
            url = f"{server.url}/bench/r{index}/resolve/main/m.gguf"
            results["curl"].append(size / _curl_seconds(url, workdir / "curl.out", False) / MB)
            results["curl + sha256sum"].append(size / _curl_seconds(url, workdir / "curl.out", True) / MB)
            results["hive"].append(size / _hive_seconds(hive.base_url, ref) / MB)
        medians = {name: statistics.median(values) for name, values in results.items()}
        print(f"file: {args.size_mb} MB, {args.rounds} rounds, loopback HTTP, one server for all, "
              f"load average {os.getloadavg()[0]:.2f}")
        for name, values in results.items():
            print(f"{name:<17} {medians[name]:8.1f} MB/s   rounds {[round(x) for x in values]}")
        print(f"ratio hive/curl                {medians['hive'] / medians['curl']:.2f}")
        print(f"ratio hive/(curl + sha256sum)  {medians['hive'] / medians['curl + sha256sum']:.2f}")
    finally:
        if hive is not None:
            hive.stop()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
