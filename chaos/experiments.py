"""Chaos experiments against a real queen, hive and workers, each with its own verdict.

Every experiment states a steady state, injects one fault while clients are streaming, and then
checks (1) what the clients saw: every stream ends with `end` or a structured `error` event, or is
refused with a structured error, none hangs or is cut off silently; (2) recovery: the cluster
serves again within a bound; (3) no process outlived the cluster. A verdict is PASS or FAIL with
the evidence; `chaos/run.py` runs them and exits 1 on any FAIL.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rbee.testing.cluster import Daemon, alive, http_json, queen_daemon, wait_until
from rbee.testing.http_client import EventStream
from rbee.testing.tiny_model import build_tiny_gguf

CLIENTS = 12
TOKENS = 400
RECOVERY_S = 20.0
FAST = {
    "RBEE_HEARTBEAT_INTERVAL_S": "0.5",
    "RBEE_RESTART_BACKOFF_INITIAL_S": "0.2",
    "RBEE_SIGTERM_GRACE_S": "3",
    "RBEE_DRAIN_BUDGET_S": "5",
    "RBEE_WORKER_THREADS": "1",
    "RBEE_RATE_LIMIT_PER_S": "0",
}


@dataclass
class Verdict:
    """The outcome of one experiment."""

    name: str
    passed: bool = True
    evidence: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        """Record one observation; any false one fails the experiment."""
        self.evidence.append(f"{'ok  ' if ok else 'FAIL'} {what}")
        self.passed = self.passed and ok


@dataclass
class Outcome:
    """What one client saw."""

    status: int = 0
    last: dict = field(default_factory=dict)
    error: str = ""


class Lab:
    """A queen (with its local hive) on free ports, clients streaming through it."""

    def __init__(self, workdir: Path, model: Path, slots: int = 4) -> None:
        self.workdir, self.model = workdir, model
        self.queen = queen_daemon(workdir, extra=["--worker-slots", str(slots), "--worker-ctx-size", "8192"])
        self.outcomes: list[Outcome] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> Lab:
        """Start the queen and wait until a first task has spawned and used a worker."""
        self.queen.start(env=FAST)
        self.queen.wait_healthy(60)
        outcome = self.task(16)
        if outcome.last.get("type") != "end":
            raise RuntimeError(f"the lab did not serve a first task: {outcome}")
        return self

    def task(self, tokens: int, timeout: float = 120.0) -> Outcome:
        """Run one native task to its end and report what the client saw."""
        body = {"model": f"file://{self.model}", "prompt": "Once", "max_tokens": tokens, "ignore_eos": True}
        outcome = Outcome()
        stream = EventStream(f"{self.queen.base_url}/v2/tasks", body, timeout=timeout)
        try:
            stream.open()
            outcome.status = stream.status
            if stream.status != 200:
                outcome.last = {"type": "refused", **stream.error_body().get("error", {})}
                return outcome
            events = stream.read_all()
            outcome.last = events[-1] if events else {}
            if not stream.saw_done:
                outcome.error = "stream cut off without [DONE]"
        except (OSError, ValueError) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
        finally:
            stream.close()
        return outcome

    def clients(self, count: int, tokens: int) -> None:
        """Start `count` clients in threads, each running one task."""
        def run() -> None:
            self.outcomes.append(self.task(tokens))

        self._threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
        for thread in self._threads:
            thread.start()

    def wait_clients(self, timeout: float = 120.0) -> bool:
        """True when every client finished within `timeout`."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def workers(self) -> list[dict]:
        """The local hive's workers."""
        status, body = http_json(f"{self.queen.hive_url}/v1/workers/list")
        return body.get("workers", []) if status == 200 else []

    def busy_generations(self) -> int:
        """Generations running now, summed over the hive's workers."""
        return sum(w["slots"] - w["slots_free"] for w in self.workers() if w["state"] in ("idle", "busy"))

    def stop(self) -> list[int]:
        """Stop everything by PID; the PIDs that outlived the queen."""
        return self.queen.stop()


def judge_clients(verdict: Verdict, outcomes: list[Outcome], allowed_errors: set[str]) -> None:
    """Every client got a complete answer or a structured error of an allowed code."""
    finished = [o for o in outcomes if o.last.get("type") == "end"]
    structured = [o for o in outcomes if o.last.get("type") in ("error", "refused")
                  and o.last.get("code") in allowed_errors]
    broken = [o for o in outcomes if o not in finished and o not in structured]
    examples = [(o.status, o.last, o.error) for o in broken][:3]
    verdict.check(not broken, f"{len(finished)} streams ended, {len(structured)} ended with "
                  f"{sorted(allowed_errors)}, {len(broken)} broken {examples}")


def _with_lab(name: str, body: Callable[[Lab, Verdict], None], slots: int = 4) -> Verdict:
    verdict = Verdict(name)
    with tempfile.TemporaryDirectory(prefix=f"rbee-chaos-{name}-") as tmp:
        workdir = Path(tmp)
        lab = Lab(workdir, build_tiny_gguf(workdir / "tiny.gguf", context_length=8192), slots)
        try:
            lab.start()
            body(lab, verdict)
        except Exception as exc:  # an experiment that breaks is a failed experiment, with the reason
            verdict.check(False, f"experiment raised {type(exc).__name__}: {exc}")
        finally:
            left = lab.stop()
            verdict.check(not left, f"no process outlived the cluster (left: {left})")
    return verdict


def worker_killed_mid_stream() -> Verdict:
    """SIGKILL the worker while 12 clients stream: each gets an end or WORKER_CRASHED; the hive
    restarts the worker and the cluster serves again."""
    def body(lab: Lab, verdict: Verdict) -> None:
        lab.clients(CLIENTS, TOKENS)
        wait_until(lambda: lab.busy_generations() > 0, 30, 0.02)
        pid = lab.workers()[0]["pid"]
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        verdict.check(lab.wait_clients(), "every client finished (none hung)")
        judge_clients(verdict, lab.outcomes, {"WORKER_CRASHED"})
        recovered = wait_until(lambda: lab.task(8).last.get("type") == "end", RECOVERY_S, 0.2)
        verdict.check(recovered, f"serving again {time.monotonic() - killed_at:.1f} s after the kill")
        verdict.check(not alive(pid), "the killed worker is gone")
    return _with_lab("worker-killed-mid-stream", body)


def hive_frozen() -> Verdict:
    """SIGSTOP the hive while clients stream: streams already running end normally (the hive
    relays no tokens), requests still queued or new are refused with NODE_STALE (or, before the
    hive is marked stale, HIVE_UNAVAILABLE) and a retry hint, and the cluster serves again once
    the hive resumes."""
    def body(lab: Lab, verdict: Verdict) -> None:
        lab.clients(CLIENTS, TOKENS)
        wait_until(lambda: lab.busy_generations() > 0, 30, 0.02)
        hive_pid = next(pid for pid in lab.queen.descendants() if _is_hive(pid))
        os.kill(hive_pid, signal.SIGSTOP)
        try:
            stale = wait_until(lambda: _hive_stale(lab), 10, 0.1)
            verdict.check(stale, "the queen marked the frozen hive stale")
            refused = lab.task(8, timeout=30)
            verdict.check(refused.last.get("code") == "NODE_STALE", f"a new task meanwhile: {refused.last}")
        finally:
            os.kill(hive_pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        verdict.check(lab.wait_clients(), "every client finished (none hung)")
        judge_clients(verdict, lab.outcomes, {"NODE_STALE", "HIVE_UNAVAILABLE"})
        recovered = wait_until(lambda: lab.task(8).last.get("type") == "end", RECOVERY_S, 0.2)
        verdict.check(recovered, f"serving {time.monotonic() - resumed_at:.1f} s after the hive resumed")
    return _with_lab("hive-frozen", body)


def queen_killed() -> Verdict:
    """SIGKILL the queen while clients stream: the clients see their streams end (an error on
    their side, never a hang), the hive and its workers die with it (no orphan), and a new queen
    on the same data dir serves again."""
    def body(lab: Lab, verdict: Verdict) -> None:
        lab.clients(CLIENTS, TOKENS)
        wait_until(lambda: lab.busy_generations() > 0, 30, 0.02)
        family = [lab.queen.pid, *lab.queen.descendants()]
        lab.queen.process.send_signal(signal.SIGKILL)
        lab.queen.process.wait()
        killed_at = time.monotonic()
        verdict.check(lab.wait_clients(30), "every client noticed within 30 s (none hung)")
        verdict.check(all(o.last.get("type") != "end" or o.error == "" for o in lab.outcomes),
                      "no client took a cut-off stream for a complete one")
        gone = wait_until(lambda: not any(alive(pid) for pid in family), 15, 0.1)
        verdict.check(gone, f"hive and workers gone {time.monotonic() - killed_at:.1f} s after the queen")
        lab.queen = Daemon(lab.queen.args, lab.queen.base_url, "/health", lab.queen.log_path,
                           hive_url=lab.queen.hive_url)
        lab.queen.start(env=FAST)
        lab.queen.wait_healthy(60)
        recovered = wait_until(lambda: lab.task(8).last.get("type") == "end", RECOVERY_S, 0.2)
        verdict.check(recovered, f"a new queen serves {time.monotonic() - killed_at:.1f} s after the kill")
    return _with_lab("queen-killed", body)


def _is_hive(pid: int) -> bool:
    try:
        return " hive " in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False


def _hive_stale(lab: Lab) -> bool:
    status, body = http_json(f"{lab.queen.base_url}/v2/workers/list")
    return status == 200 and any(h["stale"] for h in body["hives"])


EXPERIMENTS: dict[str, Callable[[], Verdict]] = {
    "worker-killed-mid-stream": worker_killed_mid_stream,
    "hive-frozen": hive_frozen,
    "queen-killed": queen_killed,
}


def as_json(verdict: Verdict) -> str:
    """One verdict as a JSON line."""
    return json.dumps({"experiment": verdict.name, "passed": verdict.passed, "evidence": verdict.evidence})
