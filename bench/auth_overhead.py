"""Auth overhead per request at the queen: the same request with and without a bearer token.

Starts four real queens on loopback in the same run:
- dev mode (no token): the baseline;
- a second one in dev mode: its ratio to the baseline shows the run's noise;
- a token, audit records fsync'ed (the default);
- a token, audit records left to the OS (`RBEE_AUDIT_FSYNC=0`), to separate the cost of the
  token check from the cost of the audit record each authenticated request writes.
Each is sent the same sequential `GET /v2/workers/list` over one keep-alive connection, in
interleaved rounds; prints the median µs/request of each and the ratios to the baseline.

Run: .venv/bin/python bench/auth_overhead.py [--requests 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from rbee.common.secrets import generate_token, write_token_file
from rbee.testing.cluster import Daemon, queen_daemon

UNLIMITED = {"RBEE_RATE_LIMIT_PER_S": "0", "RBEE_FAILURE_LIMIT": "0", "RBEE_MAX_CONCURRENT_PER_CLIENT": "0"}


async def _time_requests(url: str, headers: dict[str, str], count: int) -> float:
    """Seconds per request, sequential over one connection."""
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(20):
            async with session.get(url) as response:
                assert response.status == 200, response.status
                await response.read()
        started = time.perf_counter()
        for _ in range(count):
            async with session.get(url) as response:
                await response.read()
        return (time.perf_counter() - started) / count


def _start(workdir: Path, name: str, extra: list[str], env: dict[str, str]) -> Daemon:
    daemon = queen_daemon(workdir / name, extra=extra)
    daemon.start(env={**UNLIMITED, **env})
    daemon.wait_healthy()
    return daemon


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rbee-auth-bench-"))
    token = generate_token()
    write_token_file(workdir / "queen.token", token)
    token_flags = ["--token-file", str(workdir / "queen.token")]
    bearer = {"Authorization": f"Bearer {token}"}
    variants = {
        "no token (dev mode, baseline)": (_start(workdir, "dev", [], {}), {}),
        "no token, second queen (noise)": (_start(workdir, "dev2", [], {}), {}),
        "token + audit fsync (default)": (_start(workdir, "fsync", token_flags, {}), bearer),
        "token + audit, no fsync": (
            _start(workdir, "nofsync", token_flags, {"RBEE_AUDIT_FSYNC": "0"}), bearer
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(args.rounds):
            for name, (daemon, headers) in variants.items():
                url = f"{daemon.base_url}/v2/workers/list"
                samples[name].append(asyncio.run(_time_requests(url, headers, args.requests)))
    finally:
        for daemon, _ in variants.values():
            daemon.stop()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    baseline = medians["no token (dev mode, baseline)"]
    print(f"auth overhead: GET /v2/workers/list, {args.requests} sequential requests per round, "
          f"median of {args.rounds} interleaved rounds")
    for name, value in medians.items():
        print(f"  {name:32s} {value * 1e6:8.1f} µs/request   ratio {value / baseline:5.2f}x")


if __name__ == "__main__":
    main()
