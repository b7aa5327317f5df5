"""Fair-queueing benchmark: one API key keeps a model's admission queue full, another sends one
request a second; how long does the second key wait?

Starts a real queen with its local hive and one tiny-model worker of few slots (so a queue
forms), creates two named keys (`POST /v2/keys` with the bootstrap token: `flood` and
`trickle`, weight 1 each), and measures the trickle key's requests in four phases:

1. alone: only the trickle key sends, one request a second;
2. busy: the flood key keeps just the worker's slots busy (as many tasks in flight as slots, no
   backlog): what a request waits for a slot of a busy worker, whatever the scheduler;
3. fair: the flood key keeps `--flood` requests in flight (each one answered is sent again,
   so its backlog stays queued) while the trickle key sends one a second;
4. FIFO, for contrast: the same flood sent with the trickle's own key, so both share one
   tenant and the queue serves them first come, first served (what every request met before
   weighted fair queueing).

The figure is the client-measured wait: from sending a request to its first event (`started`,
which the queen holds back until the first token: queue wait, prefill and one token), since
that is what a client waits for, measured outside the queen. The queen's own `queue_wait_ms`
(from the `started` event) and the position the first `queued` note told are printed beside
it. The goal (issue 16): the trickle key's p95 with the flood ≤ 2× its p95 alone. Phase 2
separates what the flood's backlog costs (fair against busy) from what waiting for a busy
slot costs at all (busy against alone), which no scheduler that does not preempt avoids.

Run: .venv/bin/python bench/fairness.py                 (tiny model, ~2 min on 2 cores)
     .venv/bin/python bench/fairness.py --slots 4 --flood 200 --requests 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from rbee.common.secrets import generate_token, write_token_file
from rbee.testing.cluster import queen_daemon
from rbee.testing.tiny_model import build_tiny_gguf

GOAL_RATIO = 2.0
START_TIMEOUT_S = 120.0
BACKLOG_TIMEOUT_S = 120.0
UNLIMITED = {"RBEE_RATE_LIMIT_PER_S": "0", "RBEE_FAILURE_LIMIT": "0", "RBEE_MAX_CONCURRENT_PER_CLIENT": "0"}
QUEUE = {"RBEE_ADMISSION_QUEUE_DEPTH": "4096", "RBEE_ADMISSION_WAIT_MAX_S": "900",
         "RBEE_REQUEST_DEADLINE_S": "900"}
PROMPT = "Once upon a time, in a small village at the edge of a great forest, there lived"


class KeysMissing(RuntimeError):
    """The queen has no `POST /v2/keys`: named keys are not there to measure with."""


@dataclass(frozen=True)
class Wait:
    """One trickle request: ms to its first event, the queen's queue wait, the first position told."""

    first_event_ms: float
    queue_wait_ms: float
    position: int | None


@dataclass(frozen=True)
class Phase:
    """The trickle key's waits in one phase."""

    name: str
    waits: list[Wait]

    def p(self, q: float, of: str = "first_event_ms") -> float:
        values = sorted(getattr(w, of) for w in self.waits)
        return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]

    def row(self) -> str:
        told = [w.position for w in self.waits if w.position is not None]
        position = f"{max(told)}" if told else "-"
        return (f"| {self.name} | {len(self.waits)} | {self.p(0.5):.0f} | {self.p(0.95):.0f} | "
                f"{self.p(0.5, 'queue_wait_ms'):.0f} | {self.p(0.95, 'queue_wait_ms'):.0f} | {position} |")


class Client:
    """Native tasks (`POST /v2/tasks`) with one key."""

    def __init__(self, session: aiohttp.ClientSession, base: str, key: str, model: str, tokens: int) -> None:
        self._session, self._url = session, f"{base}/v2/tasks"
        self._headers = {"Authorization": f"Bearer {key}"}
        self._body = {"model": model, "max_tokens": tokens, "ignore_eos": True, "temperature": 0.7}

    async def task(self, seed: int) -> Wait:
        """Run one task to its end; its wait."""
        body = {**self._body, "prompt": f"Story {seed}. {PROMPT}", "seed": seed}
        sent = time.perf_counter()
        first_event, queue_wait, position = 0.0, 0.0, None
        async with self._session.post(self._url, json=body, headers=self._headers) as response:
            response.raise_for_status()
            async for raw in response.content:
                line = raw.decode().strip()
                if line.startswith(": queued position=") and position is None:
                    position = int(line.split("=")[1].split()[0])
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if event["type"] == "started":
                    first_event = first_event or time.perf_counter()
                    queue_wait = event.get("queue_wait_ms") or 0.0
                elif event["type"] == "error":
                    raise RuntimeError(f"task failed: {event}")
        return Wait((first_event - sent) * 1000, queue_wait, position)


async def create_key(session: aiohttp.ClientSession, base: str, admin: str, name: str, weight: float) -> str:
    """A named inference key of `weight` (the secret the queen prints once)."""
    body = {"name": name, "scopes": ["inference"], "weight": weight}
    async with session.post(f"{base}/v2/keys", json=body,
                            headers={"Authorization": f"Bearer {admin}"}) as response:
        if response.status in (404, 405):
            raise KeysMissing(f"POST /v2/keys answered {response.status}")
        response.raise_for_status()
        return (await response.json())["key"]


async def queued(session: aiohttp.ClientSession, base: str, admin: str) -> int:
    """Requests waiting in the queen's admission queue now."""
    headers = {"Authorization": f"Bearer {admin}"}
    async with session.get(f"{base}/v2/workers/list", headers=headers) as response:
        response.raise_for_status()
        return (await response.json())["queue"]["waiting"]


async def trickle(client: Client, requests: int, interval_s: float, seed: int) -> list[Wait]:
    """`requests` tasks, one sent every `interval_s` whether or not the last one ended."""
    start = time.perf_counter()
    tasks = []
    for i in range(requests):
        await asyncio.sleep(max(0.0, start + i * interval_s - time.perf_counter()))
        tasks.append(asyncio.create_task(client.task(seed + i)))
    return list(await asyncio.gather(*tasks))


async def flood(client: Client, stop: asyncio.Event, seed: int) -> None:
    """Tasks one after the other until `stop` (so the flood's backlog stays queued)."""
    while not stop.is_set():
        await client.task(seed)
        seed += 1_000


async def with_flood(args: argparse.Namespace, session: aiohttp.ClientSession, base: str, admin: str,
                     flooder: Client, measured: Client, name: str, seed: int, tasks: int) -> Phase:
    """The trickle measured while `flooder` keeps `tasks` tasks in flight."""
    stop = asyncio.Event()
    loops = [asyncio.create_task(flood(flooder, stop, seed + i)) for i in range(tasks)]
    backlog = tasks - args.slots
    await asyncio.sleep(1.0)  # the flood's first tasks hold the slots
    deadline = time.monotonic() + BACKLOG_TIMEOUT_S
    while await queued(session, base, admin) < 0.9 * backlog:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the flood's backlog never reached {backlog} queued requests")
        await asyncio.sleep(0.2)
    try:
        return Phase(name, await trickle(measured, args.requests, args.interval_s, seed + 500_000))
    finally:
        stop.set()
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        while await queued(session, base, admin):
            await asyncio.sleep(0.2)


async def measure(args: argparse.Namespace, base: str, admin: str, model: str) -> list[Phase]:
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        flood_key = await create_key(session, base, admin, "flood", 1.0)
        trickle_key = await create_key(session, base, admin, "trickle", 1.0)
        flooder = Client(session, base, flood_key, model, args.tokens)
        measured = Client(session, base, trickle_key, model, args.tokens)
        await measured.task(0)  # spawns the worker and loads the model
        alone = Phase("alone", await trickle(measured, args.requests, args.interval_s, 1))
        busy = await with_flood(args, session, base, admin, flooder, measured, "slots busy, no backlog",
                                5_000, args.slots)
        fair = await with_flood(args, session, base, admin, flooder, measured, "flood on another key",
                                10_000, args.flood)
        phases = [alone, busy, fair]
        if not args.without_fifo:
            same = Client(session, base, trickle_key, model, args.tokens)
            phases.append(await with_flood(args, session, base, admin, same, measured,
                                           "flood on the same key (FIFO)", 20_000_000, args.flood))
        return phases


def report(args: argparse.Namespace, phases: list[Phase]) -> str:
    alone, busy, fair = phases[:3]
    ratio = fair.p(0.95) / alone.p(0.95)
    lines = [
        f"Fair queueing: {args.flood} requests kept in flight by one key, one request every "
        f"{args.interval_s:g} s by another ({args.requests} measured per phase), {args.tokens} tokens "
        f"each, one tiny-model worker of {args.slots} slots.",
        "",
        "| trickle key's requests | n | first event p50 ms | p95 ms | queue wait p50 ms | p95 ms "
        "| largest position told |",
        "|---|---|---|---|---|---|---|",
        *(phase.row() for phase in phases),
        "",
        f"p95 with the flood on another key / p95 alone: {ratio:.2f} (goal ≤ {GOAL_RATIO:g}×: "
        f"{'met' if ratio <= GOAL_RATIO else 'not met'})",
        f"p95 with the flood on another key / p95 with the slots busy and no backlog: "
        f"{fair.p(0.95) / busy.p(0.95):.2f} (what the other key's backlog adds)",
    ]
    if len(phases) > 3:
        lines.append(f"p95 with the flood on the same key (FIFO) / p95 alone: "
                     f"{phases[3].p(0.95) / alone.p(0.95):.1f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=2, help="slots of the one worker")
    parser.add_argument("--flood", type=int, default=200, help="tasks the flood key keeps in flight")
    parser.add_argument("--requests", type=int, default=20, help="trickle tasks measured per phase")
    parser.add_argument("--interval-s", type=float, default=1.0, help="seconds between trickle tasks")
    parser.add_argument("--tokens", type=int, default=16, help="tokens each task generates")
    parser.add_argument("--without-fifo", action="store_true", help="skip the FIFO contrast phase")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rbee-fairness-"))
    model = build_tiny_gguf(work / "tiny.gguf")
    tokens = {role: generate_token() for role in ("queen", "hive", "worker")}
    for role, token in tokens.items():
        write_token_file(work / "secrets" / role, token)
    secrets = work / "secrets"
    extra = ["--worker-slots", str(args.slots), "--start-hive", "--token-file", str(secrets / "queen"),
             "--hive-token-file", str(secrets / "hive"), "--worker-token-file", str(secrets / "worker")]
    queen = queen_daemon(work / "queen", extra=extra)
    queen.start(env={**UNLIMITED, **QUEUE, "RBEE_WORKER_THREADS": "1"})
    try:
        queen.wait_healthy(START_TIMEOUT_S)
        phases = asyncio.run(measure(args, queen.base_url, tokens["queen"], f"file://{model}"))
    except KeysMissing as exc:
        print(f"the bench waits on named API keys: {exc}; it needs `POST /v2/keys` (issue 16, part 1)",
              file=sys.stderr)
        return 2
    finally:
        queen.stop()
    print(report(args, phases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
