"""One WorkerOwner on its own, owning small real processes that stand in for a worker (each test
scripts what its processes do: sleep, exit with a code, ignore SIGTERM, note a SIGHUP). The
owner is driven only through its inbox (typed messages) and observed through its record's wire
form; every process started is stopped by the end of each test, which is checked."""

import asyncio
import sys
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from child_processes import kill_new, live_descendants

from rbee.common import processes
from rbee.common.tunables import Timings
from rbee.common.wire import WorkerState
from rbee.hive.catalog import ModelEntry
from rbee.hive.gpu_fit import GpuShare, Placement
from rbee.hive.owner_messages import Heartbeat, Ready, Reload, Spawned, Stop
from rbee.hive.preflight import Need
from rbee.hive.restart_policy import RestartPolicy
from rbee.hive.worker_owner import WorkerOwner, WorkerRecord

WAIT_S = 20.0
FIRST_PORT = 18900
SLOTS = 2
TIMINGS = Timings(
    heartbeat_interval_s=0.1,       # the owner looks at its timers every 0.05 s
    stale_after_missed=10_000,      # no heartbeat is missed unless a test says so
    restart_backoff_initial_s=0.01,
    restart_jitter=0.0,
    drain_budget_s=5.0,
    sigterm_grace_s=5.0,
)

SLEEPS = "import time; time.sleep(600)"
"""A worker that runs until signalled (SIGTERM ends it)."""


def exits(code: int) -> str:
    return f"import sys; sys.exit({code})"


EXITS_ON_GO = (
    "import pathlib, sys, time\n"
    "go = pathlib.Path(sys.argv[1]) / 'go'\n"
    "while not go.exists(): time.sleep(0.01)\n"
    "sys.exit(int(sys.argv[2]))\n"
)
"""Exits with code argv[2] once the test creates `<dir>/go`."""
IGNORES_SIGTERM = (
    "import pathlib, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "(pathlib.Path(sys.argv[1]) / 'armed').touch()\n"
    "time.sleep(600)\n"
)
NOTES_SIGHUP = (
    "import pathlib, signal, sys, time\n"
    "folder = pathlib.Path(sys.argv[1])\n"
    "signal.signal(signal.SIGHUP, lambda *_: (folder / 'hup').touch())\n"
    "(folder / 'armed').touch()\n"
    "while True: time.sleep(1)\n"
)


@pytest.fixture(autouse=True)
def no_orphans():
    before = live_descendants()
    yield
    assert kill_new(before) == {}, "processes outlived the test"


class Launches:
    """The owner's launcher: each launch starts the next script (the last one repeats) as a real
    process, told a port of its own."""

    def __init__(self, folder: Path, *scripts: str, args: tuple[str, ...] = ()) -> None:
        self.folder = folder
        self.scripts = scripts
        self.args = args
        self.started: list[asyncio.subprocess.Process] = []

    async def __call__(self, record: WorkerRecord) -> Spawned:
        script = self.scripts[min(len(self.started), len(self.scripts) - 1)]
        process = await processes.spawn([sys.executable, "-c", script, str(self.folder), *self.args],
                                        self.folder / "worker.log")
        self.started.append(process)
        return Spawned(process, FIRST_PORT + len(self.started) - 1)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.started]


class Owned:
    """A WorkerOwner running in its task, with what it audited."""

    def __init__(self, owner: WorkerOwner, task: asyncio.Task, launches: Launches, audit: list) -> None:
        self.owner = owner
        self.task = task
        self.launches = launches
        self.audit = audit

    @property
    def wire(self) -> dict:
        return self.owner.record.to_wire()

    def audited(self, event: str) -> list[dict]:
        return [fields for name, fields in self.audit if name == event]

    async def until(self, condition, what: str) -> None:
        """Wait for a condition of the record (which has no event of its own), generously."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while not condition(self.wire):
            assert not self.task.done(), f"the owner ended ({self.wire['state']}) before {what}"
            assert loop.time() < deadline, f"timed out waiting for {what}: {self.wire}"
            await asyncio.sleep(0.01)

    async def finished(self) -> dict:
        """Wait for the owner to end for good; the record's last wire form."""
        await asyncio.wait_for(asyncio.shield(self.task), WAIT_S)
        return self.wire


@asynccontextmanager
async def owned(tmp_path, *scripts: str, timings: Timings = TIMINGS, args: tuple[str, ...] = ()):
    """Start the first process, hand it to a new owner and run the owner; at the end stop it
    (if a test did not) and wait until it has ended."""
    launches = Launches(tmp_path, *scripts, args=args)
    record = WorkerRecord("w-test", ModelEntry("tiny", "file:///m/tiny.gguf", "/m/tiny.gguf", 1), 0, SLOTS)
    spawned = await launches(record)
    audit: list = []
    owner = WorkerOwner(record, spawned, launches, RestartPolicy(timings), timings,
                        lambda event, **fields: audit.append((event, fields)))
    task = asyncio.create_task(owner.run())
    try:
        yield Owned(owner, task, launches, audit)
    finally:
        if not task.done():
            owner.post(Stop("the test ended"))
        await asyncio.wait_for(task, WAIT_S)
    assert all(p.returncode is not None for p in launches.started)


async def wait_for_file(path: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not path.exists():
        assert loop.time() < deadline, f"{path.name} never appeared"
        await asyncio.sleep(0.01)


def idle(wire: dict) -> bool:
    return wire["state"] == "idle"


def test_a_new_worker_is_loading_with_the_pid_and_port_of_its_first_process(tmp_path):
    async def scenario():
        async with owned(tmp_path, SLEEPS) as o:
            return o.wire, o.launches.pids

    wire, pids = asyncio.run(scenario())
    assert wire["state"] == "loading"
    assert (wire["pid"], wire["port"], wire["url"]) == (pids[0], FIRST_PORT, f"http://127.0.0.1:{FIRST_PORT}")
    assert (wire["slots"], wire["slots_free"], wire["ready_at"]) == (SLOTS, 0, None)


def test_a_ready_callback_makes_a_loading_worker_idle_with_every_slot_free(tmp_path):
    async def scenario():
        async with owned(tmp_path, SLEEPS) as o:
            o.owner.post(Ready())
            await o.until(idle, "the worker to be idle")
            return o.wire

    wire = asyncio.run(scenario())
    assert (wire["state"], wire["slots_free"]) == ("idle", SLOTS)
    assert wire["ready_at"] >= wire["started_at"]


def test_a_heartbeat_reports_the_workers_state_and_free_slots(tmp_path):
    async def scenario():
        async with owned(tmp_path, SLEEPS) as o:
            o.owner.post(Ready())
            o.owner.post(Heartbeat(WorkerState.BUSY, 1))
            await o.until(lambda w: w["state"] == "busy", "the heartbeat to arrive")
            return o.wire

    wire = asyncio.run(scenario())
    assert (wire["state"], wire["slots_free"]) == ("busy", 1)


def test_a_heartbeat_while_loading_does_not_make_the_worker_serving(tmp_path):
    async def scenario():
        async with owned(tmp_path, SLEEPS) as o:
            o.owner.post(Heartbeat(WorkerState.BUSY, 1))
            o.owner.post(Ready())  # handled after the heartbeat: it finds the worker still loading
            await o.until(lambda w: w["state"] != "loading", "the ready callback to arrive")
            return o.wire

    wire = asyncio.run(scenario())
    assert (wire["state"], wire["slots_free"]) == ("idle", SLOTS)


def test_a_worker_that_exits_with_code_zero_is_stopped_and_not_restarted(tmp_path):
    async def scenario():
        async with owned(tmp_path, exits(0)) as o:
            return await o.finished(), len(o.launches.started)

    wire, launched = asyncio.run(scenario())
    assert (wire["state"], wire["last_exit_code"], wire["restarts"]) == ("stopped", 0, 0)
    assert launched == 1


def test_a_worker_that_cannot_load_its_model_fails_and_is_not_restarted(tmp_path):
    async def scenario():
        async with owned(tmp_path, exits(4)) as o:
            return await o.finished(), len(o.launches.started)

    wire, launched = asyncio.run(scenario())
    assert (wire["state"], wire["last_exit_code"], wire["restarts"]) == ("failed", 4, 0)
    assert launched == 1


def test_a_worker_that_crashes_is_restarted_in_a_new_process(tmp_path):
    async def scenario():
        async with owned(tmp_path, exits(3), SLEEPS) as o:
            await o.until(lambda w: w["restarts"] == 1 and w["pid"] == o.launches.started[-1].pid,
                          "the restart")
            return o.wire, o.launches.pids, o.audited("worker.crashed")

    wire, pids, crashed = asyncio.run(scenario())
    assert len(pids) == 2 and pids[0] != pids[1]
    assert (wire["state"], wire["last_exit_code"], wire["port"]) == ("loading", 3, FIRST_PORT + 1)
    assert wire["last_restart_at"] is not None
    assert crashed == [{"worker_id": "w-test", "pid": pids[0], "exit_code": 3}]


def test_a_serving_worker_exiting_with_the_load_failure_code_is_restarted(tmp_path):
    async def scenario():
        async with owned(tmp_path, EXITS_ON_GO, SLEEPS, args=("4",)) as o:
            o.owner.post(Ready())
            await o.until(idle, "the worker to be idle")
            (tmp_path / "go").touch()
            await o.until(lambda w: w["restarts"] == 1, "the restart")
            return o.wire

    wire = asyncio.run(scenario())
    assert (wire["last_exit_code"], wire["restarts"]) == (4, 1)


def test_restarts_stop_once_the_models_breaker_opens(tmp_path):
    async def scenario():
        async with owned(tmp_path, exits(3), timings=replace(TIMINGS, max_restarts=2)) as o:
            return await o.finished(), len(o.launches.started)

    wire, launched = asyncio.run(scenario())
    assert (wire["state"], wire["restarts"], wire["last_exit_code"]) == ("failed", 2, 3)
    assert launched == 3


def test_a_stop_terminates_the_process_and_ends_the_owner(tmp_path):
    async def scenario():
        async with owned(tmp_path, SLEEPS) as o:
            o.owner.post(Ready())
            await o.until(idle, "the worker to be idle")
            o.owner.post(Stop("asked by the test"))
            return await o.finished(), len(o.launches.started)

    wire, launched = asyncio.run(scenario())
    assert (wire["state"], wire["last_exit_code"]) == ("stopped", -15)
    assert launched == 1


def test_a_worker_ignoring_sigterm_is_killed_once_the_drain_budget_and_grace_are_spent(tmp_path):
    async def scenario():
        timings = replace(TIMINGS, drain_budget_s=0.2, sigterm_grace_s=0.2)
        async with owned(tmp_path, IGNORES_SIGTERM, timings=timings) as o:
            await wait_for_file(tmp_path / "armed")
            o.owner.post(Stop("asked by the test"))
            return await o.finished()

    wire = asyncio.run(scenario())
    assert (wire["state"], wire["last_exit_code"]) == ("stopped", -9)


def test_a_stop_during_the_restart_backoff_ends_the_worker_without_restarting(tmp_path):
    async def scenario():
        timings = replace(TIMINGS, restart_backoff_initial_s=3600.0)
        async with owned(tmp_path, exits(3), SLEEPS, timings=timings) as o:
            await o.until(lambda w: w["state"] == "crashed", "the crash")
            o.owner.post(Stop("asked by the test"))
            return await o.finished(), len(o.launches.started)

    wire, launched = asyncio.run(scenario())
    assert (wire["state"], wire["restarts"], wire["last_exit_code"]) == ("stopped", 0, 3)
    assert launched == 1


def test_a_worker_that_misses_its_heartbeats_is_killed_as_hung_and_restarted(tmp_path):
    async def scenario():
        async with owned(tmp_path, SLEEPS, timings=replace(TIMINGS, stale_after_missed=3)) as o:
            o.owner.post(Ready())
            await o.until(lambda w: w["restarts"] == 1, "the restart")
            return o.wire, o.audited("worker.kill"), o.launches.pids

    wire, killed, pids = asyncio.run(scenario())
    assert wire["last_kill_reason"].startswith("missed 3 heartbeats")
    assert wire["last_exit_code"] == -15
    assert killed[0]["pid"] == pids[0] and killed[0]["reason"] == wire["last_kill_reason"]


def test_a_worker_reporting_a_stalled_decode_loop_is_killed_and_restarted(tmp_path):
    async def scenario():
        async with owned(tmp_path, SLEEPS) as o:
            o.owner.post(Ready())
            o.owner.post(Heartbeat(WorkerState.BUSY, 0, decode_stalled=True))
            await o.until(lambda w: w["restarts"] == 1, "the restart")
            return o.wire

    wire = asyncio.run(scenario())
    assert wire["last_kill_reason"] == "decode loop stalled"
    assert wire["state"] == "loading"


def test_a_worker_still_loading_after_the_loading_timeout_is_killed_and_restarted(tmp_path):
    async def scenario():
        async with owned(tmp_path, SLEEPS, timings=replace(TIMINGS, loading_timeout_s=0.3)) as o:
            await o.until(lambda w: w["restarts"] == 1, "the restart")
            return o.wire

    assert asyncio.run(scenario())["last_kill_reason"] == "still loading after 0.3s"


def test_an_idle_worker_is_stopped_after_the_idle_unload_time(tmp_path):
    async def scenario():
        async with owned(tmp_path, SLEEPS, timings=replace(TIMINGS, idle_unload_s=0.3)) as o:
            o.owner.post(Ready())
            return await o.finished(), len(o.launches.started)

    wire, launched = asyncio.run(scenario())
    assert (wire["state"], wire["last_exit_code"], wire["restarts"]) == ("stopped", -15, 0)
    assert launched == 1


def test_a_reload_passes_sighup_on_to_the_worker_process(tmp_path):
    async def scenario():
        async with owned(tmp_path, NOTES_SIGHUP) as o:
            await wait_for_file(tmp_path / "armed")
            o.owner.post(Reload())
            await wait_for_file(tmp_path / "hup")
            return o.wire

    assert asyncio.run(scenario())["state"] == "loading"  # the process lives on


GIB = 1 << 30
CPU_NEED = Need(ram_bytes=GIB, disk_bytes=1, backend="cpu")
TWO_GPUS = (GpuShare(1, "GPU-bbbb", 6 * GIB), GpuShare(0, "GPU-cccc", 3 * GIB))
GPU_NEED = Need(GIB, 1, "cuda", Placement(TWO_GPUS, 7, (0.5, 0.5)), all_layers=19, split_mode="layer")


def test_the_worker_record_of_a_gpu_worker_names_its_gpus_and_has_no_limit():
    model = ModelEntry("m", "file:///m.gguf", "/m.gguf", 1)
    gpu = WorkerRecord("w-1", model, 8081, 1, need=GPU_NEED).to_wire()
    cpu = WorkerRecord("w-2", model, 8082, 1, need=CPU_NEED).to_wire()
    assert {k: gpu[k] for k in ("backend", "device", "gpus", "gpu_layers", "vram_required_bytes",
                                "address_space_limit_bytes")} == {
        "backend": "cuda", "device": 1,
        "gpus": [{"index": 1, "uuid": "GPU-bbbb"}, {"index": 0, "uuid": "GPU-cccc"}], "gpu_layers": 7,
        "vram_required_bytes": 9 * GIB, "address_space_limit_bytes": None}
    assert (cpu["backend"], cpu["device"], cpu["gpus"], cpu["gpu_layers"]) == ("cpu", None, [], 0)
    assert cpu["address_space_limit_bytes"] == CPU_NEED.address_space_limit
