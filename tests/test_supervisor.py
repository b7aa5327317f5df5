"""The hive's WorkerSupervisor on its own, starting real `rbee worker` processes on the tiny GGUF.
The workers' ready callbacks and heartbeats reach it through the hive's own handlers, served on
a loopback port; no other part of the hive runs. Every process started is gone by the end of
each test, which is checked."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import psutil
import pytest
from aiohttp import web
from child_processes import kill_new, live_descendants

from rbee.common.auth import Keyring
from rbee.common.errors import ApiError, error_middleware
from rbee.common.ports import free_port
from rbee.common.tunables import GpuLimits, Timings
from rbee.hive import backends
from rbee.hive.api.workers import heartbeat, worker_ready
from rbee.hive.app_keys import SUPERVISOR
from rbee.hive.catalog import ModelEntry
from rbee.hive.gpus import Gpu
from rbee.hive.supervisor import SupervisorSettings, WorkerSupervisor
from rbee.hive.vram_ledger import VramLedger
from rbee.hive.worker_owner import WorkerRecord
from rbee.testing.tiny_model import build_tiny_gguf

CTX = 512
SLOTS = 2
WAIT_S = 60.0
"""Generous bound for a worker process to start, load the tiny model and call back."""
TIMINGS = Timings(restart_backoff_initial_s=0.05, restart_jitter=0.0)


@pytest.fixture(autouse=True)
def no_orphans():
    before = live_descendants()
    yield
    assert kill_new(before) == {}, "processes outlived the test"


@dataclass
class Hive:
    supervisor: WorkerSupervisor
    model: ModelEntry
    audit: list

    def audited(self, event: str) -> list[dict]:
        return [fields for name, fields in self.audit if name == event]

    def pid_file(self) -> list[dict]:
        return json.loads(self.supervisor.settings.pid_file.read_text())

    async def until(self, condition, what: str) -> None:
        """Wait for a condition that has no event of its own, generously."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while not condition():
            assert loop.time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    async def serving(self, record: WorkerRecord) -> None:
        await self.until(lambda: record.state == "idle", f"worker {record.worker_id} to serve")


@asynccontextmanager
async def hive(tmp_path, timings: Timings = TIMINGS, ledger: VramLedger | None = None):
    """A supervisor whose workers call back to the hive's handlers on a loopback port; every
    worker is stopped at the end."""
    path = build_tiny_gguf(tmp_path / "tiny.gguf", context_length=CTX)
    model = ModelEntry("tiny", f"file://{path}", str(path), path.stat().st_size)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    (tmp_path / "hive").mkdir()  # the hive's data dir, made by the hive before its supervisor runs
    keyring = Keyring("hive", {"hive": None, "worker": None})
    keyring.load()
    settings = SupervisorSettings(f"http://127.0.0.1:{listener.getsockname()[1]}", tmp_path / "hive",
                                  "127.0.0.1", "127.0.0.1", free_port(), CTX, keyring)
    audit: list = []
    supervisor = WorkerSupervisor(settings, timings, lambda event, **fields: audit.append((event, fields)),
                                  ledger)
    app = web.Application(middlewares=[error_middleware])
    app[SUPERVISOR] = supervisor
    app.router.add_post("/v1/workers/ready", worker_ready)
    app.router.add_post("/v1/heartbeat", heartbeat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    try:
        yield Hive(supervisor, model, audit)
    finally:
        await asyncio.wait_for(supervisor.stop_all("the test ended"), WAIT_S)
        await runner.cleanup()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_spawned_worker_is_listed_as_loading_at_once_with_its_process_and_port(tmp_path):
    async def scenario():
        async with hive(tmp_path) as h:
            record = await h.supervisor.spawn(h.model, SLOTS)
            listed = [r.to_wire() for r in h.supervisor.list()]
            return record.to_wire(), listed, alive(record.pid), h.supervisor.settings.worker_port_start

    wire, listed, running, port_start = asyncio.run(scenario())
    assert listed == [wire]
    assert wire["state"] == "loading" and running
    assert wire["port"] >= port_start and wire["url"] == f"http://127.0.0.1:{wire['port']}"
    assert (wire["model"], wire["slots"], wire["backend"]) == ("tiny", SLOTS, "cpu")


def test_a_spawned_worker_serves_once_its_ready_callback_arrives(tmp_path):
    async def scenario():
        async with hive(tmp_path) as h:
            record = await h.supervisor.spawn(h.model, SLOTS)
            await h.serving(record)
            return record.to_wire()

    wire = asyncio.run(scenario())
    assert (wire["state"], wire["slots_free"]) == ("idle", SLOTS)
    assert wire["ready_at"] is not None


def test_the_status_line_counts_the_workers_by_state(tmp_path):
    async def scenario():
        async with hive(tmp_path) as h:
            empty = h.supervisor.status_line()
            await h.supervisor.spawn(h.model, SLOTS)
            return empty, h.supervisor.status_line()

    assert asyncio.run(scenario()) == ("0 workers", "1 workers (1 loading)")


def test_a_killed_worker_is_restarted_on_its_port_and_serves_again(tmp_path):
    async def scenario():
        async with hive(tmp_path) as h:
            record = await h.supervisor.spawn(h.model, SLOTS)
            await h.serving(record)
            first_pid, port = record.pid, record.port
            os.kill(first_pid, signal.SIGKILL)
            await h.until(lambda: record.restarts == 1 and record.state == "idle", "the restart")
            return first_pid, port, record.to_wire(), h.audited("worker.crashed")

    first_pid, port, wire, crashed = asyncio.run(scenario())
    assert wire["pid"] != first_pid and wire["port"] == port
    assert wire["last_exit_code"] == -signal.SIGKILL
    assert [c["pid"] for c in crashed] == [first_pid]


def test_a_worker_whose_restarts_are_used_up_leaves_the_registry_and_its_model_is_refused(
        tmp_path, monkeypatch):
    monkeypatch.setenv("RBEE_ALLOW_FAULTS", "1")
    monkeypatch.setenv("RBEE_FAULTS", "crash-on-load")

    async def scenario():
        async with hive(tmp_path, replace(TIMINGS, max_restarts=1)) as h:
            record = await h.supervisor.spawn(h.model, SLOTS)
            await h.until(lambda: not h.supervisor.list(), "the worker to leave the registry")
            with pytest.raises(ApiError) as refused:
                await h.supervisor.spawn(h.model, SLOTS)
            return record.to_wire(), refused.value, h.supervisor.list(), len(h.audited("worker.spawn"))

    wire, err, listed, spawns = asyncio.run(scenario())
    assert (wire["state"], wire["restarts"]) == ("failed", 1)
    assert (err.status, err.code) == (503, "CIRCUIT_OPEN")
    assert "Retry-After" in err.headers
    assert listed == []
    assert spawns == 2


def test_a_spawn_refused_by_preflight_starts_no_process(tmp_path):
    async def scenario():
        async with hive(tmp_path) as h:
            before = live_descendants()
            with pytest.raises(ApiError) as refused:
                await h.supervisor.spawn(h.model, SLOTS, backend="metal")
            return refused.value, h.supervisor.list(), set(live_descendants()) - set(before), h

    err, listed, started, h = asyncio.run(scenario())
    assert (err.status, err.code) == (400, "BACKEND_UNAVAILABLE")
    assert listed == [] and started == set()
    assert [r["code"] for r in h.audited("worker.refused")] == ["BACKEND_UNAVAILABLE"]


def test_a_cuda_workers_gpu_booking_lasts_until_it_leaves_the_registry(tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "compiled", lambda name: name == "cuda")
    gpu = Gpu(0, "GPU-test", "Test GPU", 16 << 30, 16 << 30, 0, 0.0, 40.0, 50.0)
    ledger = VramLedger(GpuLimits(), lambda: [gpu])

    async def scenario():
        async with hive(tmp_path, replace(TIMINGS, max_restarts=1), ledger) as h:
            record = await h.supervisor.spawn(h.model, SLOTS)
            booked = ledger.rooms()[0].booked_bytes
            # this engine has no CUDA: the worker refuses to start, crashes out and leaves the registry
            await h.until(lambda: not h.supervisor.list(), "the worker to leave the registry")
            return record.to_wire(), booked, ledger.rooms()[0].booked_bytes

    wire, booked, after = asyncio.run(scenario())
    assert (wire["backend"], wire["device"], wire["gpus"]) == ("cuda", 0, [{"index": 0, "uuid": "GPU-test"}])
    assert wire["address_space_limit_bytes"] is None
    assert booked == wire["vram_required_bytes"] > 0
    assert after == 0


def test_a_stopped_worker_drains_exits_and_leaves_the_registry(tmp_path):
    async def scenario():
        async with hive(tmp_path) as h:
            record = await h.supervisor.spawn(h.model, SLOTS)
            await h.serving(record)
            h.supervisor.stop(record.worker_id, "asked by the test")
            await h.until(lambda: not h.supervisor.list(), "the worker to leave the registry")
            return record.to_wire(), alive(record.pid), h.audited("worker.stop"), h.audited("worker.removed")

    wire, running, stops, removed = asyncio.run(scenario())
    assert (wire["state"], wire["last_exit_code"], wire["restarts"]) == ("stopped", 0, 0)
    assert not running
    assert stops == [{"worker_id": wire["worker_id"], "reason": "asked by the test"}]
    assert removed == [{"worker_id": wire["worker_id"], "state": "stopped", "exit_code": 0}]


def test_stopping_all_workers_stops_each_and_refuses_new_spawns_with_503_draining(tmp_path):
    async def scenario():
        async with hive(tmp_path) as h:
            records = [await h.supervisor.spawn(h.model, SLOTS) for _ in range(2)]
            await asyncio.wait_for(h.supervisor.stop_all("the hive stops"), WAIT_S)
            with pytest.raises(ApiError) as refused:
                await h.supervisor.spawn(h.model, SLOTS)
            return [r.to_wire() for r in records], h.supervisor.list(), refused.value

    wires, listed, err = asyncio.run(scenario())
    assert [w["state"] for w in wires] == ["stopped", "stopped"]
    assert not any(alive(w["pid"]) for w in wires)
    assert listed == []
    assert (err.status, err.code) == (503, "DRAINING")


def test_a_heartbeat_reporting_a_stalled_decode_loop_gets_the_worker_killed_and_restarted(tmp_path):
    async def scenario():
        async with hive(tmp_path) as h:
            record = await h.supervisor.spawn(h.model, SLOTS)
            await h.serving(record)
            first_pid = record.pid
            stalled = {"state": "busy", "slots_free": 0, "decode_stalled": True}
            h.supervisor.heartbeat(record.worker_id, stalled)
            await h.until(lambda: record.restarts == 1, "the restart")
            return first_pid, record.to_wire(), h.audited("worker.kill")

    first_pid, wire, killed = asyncio.run(scenario())
    assert wire["last_kill_reason"] == "decode loop stalled"
    assert killed == [{"worker_id": wire["worker_id"], "pid": first_pid, "reason": "decode loop stalled"}]


@pytest.mark.parametrize("call", ["report_ready", "heartbeat", "stop"])
def test_messages_for_a_worker_the_hive_does_not_own_are_404_worker_not_found(tmp_path, call):
    calls = {
        "report_ready": lambda s: s.report_ready("w-unknown", 8081),
        "heartbeat": lambda s: s.heartbeat("w-unknown", {"state": "idle", "slots_free": 1}),
        "stop": lambda s: s.stop("w-unknown", "asked by the test"),
    }

    async def scenario():
        async with hive(tmp_path) as h:
            with pytest.raises(ApiError) as refused:
                calls[call](h.supervisor)
            return refused.value

    err = asyncio.run(scenario())
    assert (err.status, err.code) == (404, "WORKER_NOT_FOUND")


def test_a_ready_callback_naming_another_port_is_refused_with_404(tmp_path):
    async def scenario():
        async with hive(tmp_path) as h:
            record = await h.supervisor.spawn(h.model, SLOTS)
            with pytest.raises(ApiError) as refused:
                h.supervisor.report_ready(record.worker_id, record.port + 1)
            return refused.value

    assert asyncio.run(scenario()).code == "WORKER_NOT_FOUND"


def test_the_pid_file_lists_each_running_worker_and_forgets_stopped_ones(tmp_path):
    async def scenario():
        async with hive(tmp_path) as h:
            record = await h.supervisor.spawn(h.model, SLOTS)
            listed = h.pid_file()
            await asyncio.wait_for(h.supervisor.stop_all("the hive stops"), WAIT_S)
            return listed, record.worker_id, record.pid, h.pid_file()

    listed, worker_id, pid, after = asyncio.run(scenario())
    assert listed == [{"worker_id": worker_id, "pid": pid}]
    assert after == []


def _sleeper(tmp_path, *args: str) -> subprocess.Popen:
    """A sleeper that notes a SIGTERM in `sigterm` before it exits, started once it has written
    `ready`. Started with Popen, not asyncio, so no child watcher races the hive for its exit."""
    script = ("import pathlib, signal, sys, time\n"
              "def noted(*_):\n"
              f"    pathlib.Path({str(tmp_path / 'sigterm')!r}).write_text('SIGTERM')\n"
              "    sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, noted)\n"
              f"pathlib.Path({str(tmp_path / 'ready')!r}).write_text('ready')\n"
              "time.sleep(600)\n")
    process = subprocess.Popen([sys.executable, "-c", script, *args])
    deadline = time.monotonic() + WAIT_S
    while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return process


def test_workers_left_by_a_previous_run_are_stopped_before_the_hive_serves(tmp_path):
    leftover = _sleeper(tmp_path, "w-leftover")
    (tmp_path / "stranger").mkdir()
    stranger = _sleeper(tmp_path / "stranger")

    async def scenario():
        async with hive(tmp_path) as h:
            h.supervisor.settings.pid_file.parent.mkdir(parents=True, exist_ok=True)
            h.supervisor.settings.pid_file.write_text(json.dumps([
                {"worker_id": "w-leftover", "pid": leftover.pid},
                {"worker_id": "w-reused-pid", "pid": stranger.pid},  # a PID now used by another process
            ]))
            cleanup = h.supervisor.leftovers_stopped()
            await asyncio.wait_for(anext(cleanup), WAIT_S)
            return h.supervisor.settings.pid_file.exists()

    try:
        pid_file_kept = asyncio.run(scenario())
        leftover_gone = not alive(leftover.pid)
        stranger_alive = alive(stranger.pid)
    finally:
        for process in (leftover, stranger):
            process.kill()
            process.wait()
    assert leftover_gone
    assert (tmp_path / "sigterm").read_text() == "SIGTERM"
    assert stranger_alive
    assert not pid_file_kept
