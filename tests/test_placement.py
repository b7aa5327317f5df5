"""Placement on its own: choosing a worker, spawning one through a node's hive, waiting for it,
queueing for a busy one, passing over stale and failed nodes. Each hive is a real aiohttp server
on loopback (tests/fake_peers.py) reached through the queen's real HiveClient; nodes live in a
real NodeRegistry."""

import asyncio
import time
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from fake_peers import FakeHive, NodeHandle

from rbee.common.errors import ApiError
from rbee.common.tunables import GpuLimits, Timings
from rbee.queen.nodes.hive_client import HiveClient
from rbee.queen.nodes.hive_directory import HiveDirectory
from rbee.queen.nodes.node_registry import Node, NodeRegistry, NodeSpec, utc_now
from rbee.queen.routing.hive_registry import HiveRegistry
from rbee.queen.routing.placement import Placement
from rbee.queen.routing.tenant import Tenant
from rbee.queen.routing.worker_registry import WorkerRegistry

MODEL = "tiny"
SLOTS = 2
WAIT_S = 10.0
GIB = 1 << 30
HIVE_DOWN = ApiError(503, "HIVE_UNAVAILABLE", "the test's hive does not start")


@dataclass
class Queen:
    """Placement wired as the queen wires it, and the handles of its nodes."""

    placement: Placement
    hives: HiveRegistry
    nodes: dict[str, NodeHandle]


@asynccontextmanager
async def queen(tmp_path, local=None, remote=None, fails=None, timings=None, slots=SLOTS, gpu=None):
    """`local`: the FakeHive of `localhost` (or None: the queen runs without a local hive);
    `remote`: node name → FakeHive or a URL where no hive answers; `fails`: node name → the
    error its hive start raises; `gpu`: the GpuLimits (replicas)."""
    remote, fails, timings = remote or {}, fails or {}, timings or Timings()
    async with aiohttp.ClientSession() as session:
        handles: dict[str, NodeHandle] = {}
        if local is not None:
            handles["localhost"] = NodeHandle("localhost", local.client(session), fails.get("localhost"))
        registry = NodeRegistry(tmp_path / "nodes.db")
        for name, hive in remote.items():
            url = hive if isinstance(hive, str) else hive.url
            port = int(url.rsplit(":", 1)[1])
            spec = NodeSpec(name, "127.0.0.1", 22, "rbee", "/nonexistent/key", "/opt/rbee", hive_port=port)
            registry.add(Node(spec, utc_now(), {}))
            handles[name] = NodeHandle(name, HiveClient(spec.hive_url, session), fails.get(name))

        def make_remote(spec: NodeSpec) -> NodeHandle:
            handles[spec.name].spec = spec
            return handles[spec.name]

        directory = HiveDirectory(handles.get("localhost"), registry, make_remote, stop_grace_s=1.0)
        hive_registry = HiveRegistry(timings)
        try:
            yield Queen(Placement(directory, hive_registry, WorkerRegistry(), slots, timings, gpu),
                        hive_registry, handles)
        finally:
            registry.close()


@asynccontextmanager
async def fake_hives(count: int):
    async with AsyncExitStack() as stack:
        hives = []
        for _ in range(count):
            hive = await FakeHive().start()
            stack.push_async_callback(hive.close)
            hives.append(hive)
        yield hives


def gpu(index: int, free_bytes: int) -> dict:
    """One GPU as a hive's `/v1/resources` lists it."""
    return {"index": index, "uuid": f"GPU-{index}", "total_bytes": 24 * GIB, "free_bytes": free_bytes}


async def dead_url() -> str:
    """A loopback URL where nothing listens."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return f"http://127.0.0.1:{port}"


async def until(condition, what: str) -> None:
    """Wait (generously) for a condition that has no event of its own."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def refused(placement: Placement, model: str = MODEL, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as err:
        async with placement.worker_for(model, **kwargs):
            pass
    return err.value


def test_a_serving_worker_with_a_free_slot_is_reused_without_spawning(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            existing = hive.add_worker(MODEL, "idle")
            async with q.placement.worker_for(MODEL) as worker:
                return worker.worker_id, existing["worker_id"], hive.spawns

    chosen, existing, spawns = asyncio.run(scenario())
    assert chosen == existing
    assert spawns == []


def test_a_model_without_workers_gets_one_spawned_with_the_configured_slots_and_backend(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive, slots=3) as q:
            hive.gpus = [gpu(0, 8 * GIB)]
            async with q.placement.worker_for(MODEL, backend="cuda") as worker:
                return worker, hive.spawns

    worker, spawns = asyncio.run(scenario())
    assert spawns == [{"model": MODEL, "slots": 3, "backend": "cuda", "embedding": False}]
    assert (worker.model, worker.backend, worker.slots) == (MODEL, "cuda", 3)


def test_a_spawned_worker_is_handed_out_only_once_its_hive_reports_it_serving(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            hive.lists_while_loading = 3
            async with q.placement.worker_for(MODEL) as worker:
                return worker.state, hive.list_calls

    state, list_calls = asyncio.run(scenario())
    assert state == "idle"
    assert list_calls > 3


def test_a_worker_that_fails_to_load_fails_the_request_with_503_worker_start_failed(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            hive.after_loading = "failed"
            return await refused(q.placement), hive.spawns[0]

    err, spawned = asyncio.run(scenario())
    assert (err.status, err.code) == (503, "WORKER_START_FAILED")
    assert err.details["worker_id"].startswith("w-")


def test_a_worker_that_leaves_its_hive_while_loading_fails_the_request_with_worker_start_failed(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            hive.after_loading = None
            return await refused(q.placement)

    assert asyncio.run(scenario()).code == "WORKER_START_FAILED"


def test_a_worker_that_never_finishes_loading_fails_the_request_with_504_worker_load_timeout(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive,
                                                   timings=Timings(loading_timeout_s=0.3)) as q:
            hive.lists_while_loading = 10**9
            return await refused(q.placement)

    err = asyncio.run(scenario())
    assert (err.status, err.code) == (504, "WORKER_LOAD_TIMEOUT")


def test_a_worker_still_loading_is_waited_for_instead_of_spawning_another(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            hive.lists_while_loading = 3
            loading = hive.add_worker(MODEL, "loading")
            async with q.placement.worker_for(MODEL) as worker:
                return worker.worker_id, worker.state, loading["worker_id"], hive.spawns

    chosen, state, loading, spawns = asyncio.run(scenario())
    assert (chosen, state) == (loading, "idle")
    assert spawns == []


def test_requests_arriving_together_for_a_model_without_workers_spawn_only_one(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive, slots=2) as q:
            hive.lists_while_loading = 2
            together = asyncio.Barrier(2)

            async def request() -> str:
                async with q.placement.worker_for(MODEL) as worker:
                    await asyncio.wait_for(together.wait(), WAIT_S)
                    return worker.worker_id

            ids = await asyncio.gather(request(), request())
            return ids, len(hive.spawns)

    ids, spawns = asyncio.run(scenario())
    assert spawns == 1
    assert ids[0] == ids[1]


def test_the_least_loaded_worker_is_chosen(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            hive.add_worker(MODEL, "idle", slots=2)
            hive.add_worker(MODEL, "idle", slots=2)
            async with q.placement.worker_for(MODEL) as first, q.placement.worker_for(MODEL) as second:
                return first.worker_id, second.worker_id

    first, second = asyncio.run(scenario())
    assert first != second


CHAT = [{"role": "user", "content": "Tell me about the little dog that saw a big cat. " * 4}]
NEXT_TURN = [*CHAT, {"role": "assistant", "content": "It ran."}, {"role": "user", "content": "Why?"}]


def _turn_workers(tmp_path, slots: int, timings: Timings | None = None) -> tuple[str, str]:
    """The workers a chat's first turn and, while the first is still held, its next turn got, of
    two idle workers with `slots` slots each."""
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive, slots=slots, timings=timings) as q:
            hive.add_worker(MODEL, "idle", slots=slots)
            hive.add_worker(MODEL, "idle", slots=slots)
            keys = q.placement.affinity.keys
            async with q.placement.worker_for(MODEL, prefix=keys({"messages": CHAT})) as first:
                async with q.placement.worker_for(MODEL, prefix=keys({"messages": NEXT_TURN})) as turn:
                    return first.worker_id, turn.worker_id

    return asyncio.run(scenario())


def test_a_next_turn_goes_to_the_worker_that_served_the_turn_before_even_when_it_is_busier(tmp_path):
    first, turn = _turn_workers(tmp_path, slots=4)
    assert turn == first


def test_a_next_turn_goes_to_the_least_busy_worker_when_the_one_holding_its_prefix_is_full(tmp_path):
    first, turn = _turn_workers(tmp_path, slots=1)
    assert turn != first


def test_the_worker_holding_a_prefix_is_passed_over_when_much_busier_than_another(tmp_path):
    first, turn = _turn_workers(tmp_path, slots=4, timings=Timings(prefix_affinity_slack=0.0))
    assert turn != first


def test_a_worker_on_another_backend_is_not_used(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            gpu = hive.add_worker(MODEL, "idle", backend="cuda")
            async with q.placement.worker_for(MODEL, backend="cpu") as worker:
                return worker.worker_id != gpu["worker_id"], hive.spawns

    other, spawns = asyncio.run(scenario())
    assert other
    assert [s["backend"] for s in spawns] == ["cpu"]


def test_a_request_for_a_busy_worker_waits_and_gets_the_first_slot_freed(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            only = hive.add_worker(MODEL, "idle", slots=1)

            async def second_request() -> str:
                async with q.placement.worker_for(MODEL) as worker:
                    return worker.worker_id

            async with q.placement.worker_for(MODEL):
                waiter = asyncio.create_task(second_request())
                await until(lambda: q.placement.admission.depth(MODEL) == 1, "the request to queue")
                queued_while_busy = not waiter.done()
            chosen = await asyncio.wait_for(waiter, WAIT_S)
            return queued_while_busy, chosen, only["worker_id"], q.placement.admission.depth(MODEL)

    queued, chosen, only, depth_after = asyncio.run(scenario())
    assert queued
    assert chosen == only
    assert depth_after == 0


def test_a_request_arriving_while_another_waits_queues_behind_it_though_a_slot_just_came_free(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            hive.add_worker(MODEL, "idle", slots=1)
            order = []

            async def request(name: str) -> None:
                async with q.placement.worker_for(MODEL):
                    order.append(name)

            async with q.placement.worker_for(MODEL):
                waiting = asyncio.create_task(request("waiting"))
                await until(lambda: q.placement.admission.depth(MODEL) == 1, "the request to queue")
            late = asyncio.create_task(request("late"))  # arrives while the freed slot is not taken yet
            await asyncio.wait_for(asyncio.gather(waiting, late), WAIT_S)
            return order

    assert asyncio.run(scenario()) == ["waiting", "late"]


def test_the_requests_of_two_keys_get_the_slots_in_turn_not_in_arrival_order(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            hive.add_worker(MODEL, "idle", slots=1)
            order = []

            async def request(name: str, tenant: Tenant) -> None:
                async with q.placement.worker_for(MODEL, waiter=name, tenant=tenant):
                    order.append(name)

            async with q.placement.worker_for(MODEL):
                tasks = []
                for name, key in (("f1", "flood"), ("f2", "flood"), ("f3", "flood"), ("t1", "trickle")):
                    tasks.append(asyncio.create_task(request(name, Tenant(key))))
                    await until(lambda: q.placement.admission.depth(MODEL) == len(tasks), "it to queue")
                positions = [q.placement.admission.position(MODEL, name) for name in ("f1", "t1", "f2", "f3")]
            await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
            return positions, order

    positions, order = asyncio.run(scenario())
    assert positions == [1, 2, 3, 4]
    assert order == ["f1", "t1", "f2", "f3"]


def test_a_full_admission_queue_refuses_with_429_queue_full(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive,
                                                   timings=Timings(admission_queue_depth=0)) as q:
            hive.add_worker(MODEL, "idle", slots=1)
            async with q.placement.worker_for(MODEL):
                return await refused(q.placement)

    err = asyncio.run(scenario())
    assert (err.status, err.code) == (429, "QUEUE_FULL")
    assert "Retry-After" in err.headers


def test_a_request_queued_past_the_longest_wait_gets_503_queue_timeout(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive,
                                                   timings=Timings(admission_wait_max_s=0.3)) as q:
            hive.add_worker(MODEL, "idle", slots=1)
            async with q.placement.worker_for(MODEL):
                return await refused(q.placement), q

    err, q = asyncio.run(scenario())
    assert (err.status, err.code) == (503, "QUEUE_TIMEOUT")
    assert q.placement.admission.depth() == 0


def test_a_slot_is_given_back_when_the_request_holding_it_fails(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive,
                                                   timings=Timings(admission_queue_depth=0)) as q:
            hive.add_worker(MODEL, "idle", slots=1)
            with pytest.raises(RuntimeError):
                async with q.placement.worker_for(MODEL):
                    raise RuntimeError("the stream broke")
            async with q.placement.worker_for(MODEL) as worker:  # no free slot would be QUEUE_FULL
                return worker.state

    assert asyncio.run(scenario()) == "idle"


def test_a_request_naming_a_node_is_served_only_by_that_node(tmp_path):
    async def scenario():
        async with fake_hives(2) as (local, far), queen(tmp_path, local=local, remote={"far": far}) as q:
            local.add_worker(MODEL, "idle")
            async with q.placement.worker_for(MODEL, node="far") as worker:
                return q.placement.node_of(worker), len(local.spawns), len(far.spawns)

    assert asyncio.run(scenario()) == ("far", 0, 1)


def test_the_node_of_a_worker_is_named_by_its_hive(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            hive.add_worker(MODEL, "idle")
            async with q.placement.worker_for(MODEL) as worker:
                return q.placement.node_of(worker)

    assert asyncio.run(scenario()) == "localhost"


def test_a_request_naming_an_unknown_node_is_404_node_not_found(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            return await refused(q.placement, node="nowhere"), hive.spawns

    err, spawns = asyncio.run(scenario())
    assert (err.status, err.code) == (404, "NODE_NOT_FOUND")
    assert spawns == []


def test_a_request_naming_a_node_whose_hive_cannot_start_fails_with_that_error(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive, fails={"localhost": HIVE_DOWN}) as q:
            return await refused(q.placement, node="localhost")

    err = asyncio.run(scenario())
    assert (err.status, err.code) == (503, "HIVE_UNAVAILABLE")


def test_without_nodes_a_request_is_503_no_node_available(tmp_path):
    async def scenario():
        async with queen(tmp_path) as q:
            return await refused(q.placement)

    err = asyncio.run(scenario())
    assert (err.status, err.code) == (503, "NO_NODE_AVAILABLE")
    assert "Retry-After" in err.headers


def test_a_stale_hive_is_not_routed_to(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            hive.add_worker(MODEL, "idle")
            q.hives.heard_from(hive.url, "test")
            q.hives.check(time.monotonic() + 3600)
            return await refused(q.placement, node="localhost"), hive.spawns

    err, spawns = asyncio.run(scenario())
    assert (err.status, err.code) == (503, "NODE_STALE")
    assert err.details == {"hive_url": err.details["hive_url"], "node": "localhost"}
    assert "Retry-After" in err.headers
    assert spawns == []


def test_a_stale_hive_is_passed_over_for_a_node_that_is_not(tmp_path):
    async def scenario():
        async with fake_hives(2) as (local, far), queen(tmp_path, local=local, remote={"far": far}) as q:
            local.add_worker(MODEL, "idle")
            q.hives.heard_from(local.url, "test")
            q.hives.check(time.monotonic() + 3600)
            async with q.placement.worker_for(MODEL) as worker:
                return q.placement.node_of(worker)

    assert asyncio.run(scenario()) == "far"


def test_when_every_hive_is_stale_the_request_is_503_node_stale(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            q.hives.heard_from(hive.url, "test")
            q.hives.check(time.monotonic() + 3600)
            return await refused(q.placement)

    assert asyncio.run(scenario()).code == "NODE_STALE"


def test_a_worker_is_spawned_on_the_first_node_whose_hive_starts(tmp_path):
    async def scenario():
        async with fake_hives(2) as (a, b), queen(tmp_path, remote={"a-node": a, "b-node": b},
                                                   fails={"a-node": HIVE_DOWN}) as q:
            async with q.placement.worker_for(MODEL) as worker:
                return q.placement.node_of(worker), len(a.spawns), len(b.spawns)

    assert asyncio.run(scenario()) == ("b-node", 0, 1)


def test_a_local_hive_that_cannot_start_is_passed_over_for_a_registered_node(tmp_path):
    async def scenario():
        async with fake_hives(2) as (local, far), queen(tmp_path, local=local, remote={"far": far},
                                                        fails={"localhost": HIVE_DOWN}) as q:
            async with q.placement.worker_for(MODEL) as worker:
                return q.placement.node_of(worker)

    assert asyncio.run(scenario()) == "far"


def test_a_node_whose_hive_could_not_start_is_passed_over_during_its_cooldown(tmp_path):
    async def scenario():
        async with fake_hives(2) as (a, b), queen(tmp_path, remote={"a-node": a, "b-node": b},
                                                   fails={"a-node": HIVE_DOWN},
                                                   timings=Timings(failed_node_cooldown_s=3600)) as q:
            for model in ("first-model", "second-model"):
                async with q.placement.worker_for(model):
                    pass
            return q.nodes["a-node"].starts, [s["model"] for s in b.spawns]

    starts, spawned_on_b = asyncio.run(scenario())
    assert starts == 1
    assert spawned_on_b == ["first-model", "second-model"]


def test_a_failed_node_is_tried_again_once_its_cooldown_is_over(tmp_path):
    async def scenario():
        async with fake_hives(2) as (a, b), queen(tmp_path, remote={"a-node": a, "b-node": b},
                                                   fails={"a-node": HIVE_DOWN},
                                                   timings=Timings(failed_node_cooldown_s=0.05)) as q:
            async with q.placement.worker_for("first-model"):
                pass
            await asyncio.sleep(0.2)  # let the cooldown pass
            q.nodes["a-node"].fails = None
            async with q.placement.worker_for("second-model") as worker:
                return q.placement.node_of(worker), q.nodes["a-node"].starts

    assert asyncio.run(scenario()) == ("a-node", 2)


def test_when_no_hive_can_start_the_request_fails_with_the_hives_error(tmp_path):
    async def scenario():
        async with fake_hives(1) as (a,), queen(tmp_path, remote={"a-node": a},
                                                fails={"a-node": HIVE_DOWN}) as q:
            return await refused(q.placement)

    err = asyncio.run(scenario())
    assert (err.status, err.code) == (503, "HIVE_UNAVAILABLE")


def test_stopping_a_worker_asks_its_hive(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            worker = hive.add_worker(MODEL, "idle")
            answer = await q.placement.stop_worker(worker["worker_id"])
            return answer, hive.stops, worker["worker_id"]

    answer, stops, worker_id = asyncio.run(scenario())
    assert stops == [{"worker_id": worker_id}]
    assert answer["worker_id"] == worker_id


def test_stopping_an_unknown_worker_is_404_worker_not_found(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            with pytest.raises(ApiError) as err:
                await q.placement.stop_worker("w-unknown")
            return err.value, hive.stops

    err, stops = asyncio.run(scenario())
    assert (err.status, err.code) == (404, "WORKER_NOT_FOUND")
    assert stops == []


def test_the_models_of_every_answering_hive_are_listed_and_silent_ones_skipped(tmp_path):
    async def scenario():
        async with fake_hives(2) as (local, far):
            local.models = [{"name": "default"}]
            far.models = [{"name": "file:///models/far.gguf"}]
            remote = {"far": far, "gone": await dead_url()}
            async with queen(tmp_path, local=local, remote=remote) as q:
                return await q.placement.hive_catalogs()

    names = [m["name"] for answer in asyncio.run(scenario()) for m in answer["models"]]
    assert sorted(names) == ["default", "file:///models/far.gguf"]


def test_an_auto_request_is_served_by_a_worker_of_any_backend(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            existing = hive.add_worker(MODEL, "idle", backend="cuda", device=0)
            async with q.placement.worker_for(MODEL, backend="auto") as worker:
                return worker.worker_id == existing["worker_id"], worker.device, hive.spawns

    reused, device, spawns = asyncio.run(scenario())
    assert (reused, device, spawns) == (True, 0, [])


def test_an_auto_request_prefers_a_cuda_worker_with_a_free_slot_over_a_less_busy_cpu_one(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            hive.add_worker(MODEL, "idle", slots=4, backend="cpu")
            hive.add_worker(MODEL, "idle", slots=2, backend="cuda", device=0)
            async with q.placement.worker_for(MODEL) as first, q.placement.worker_for(MODEL) as second:
                async with q.placement.worker_for(MODEL) as third:
                    return first.backend, second.backend, third.backend

    assert asyncio.run(scenario()) == ("cuda", "cuda", "cpu")


def test_an_auto_spawn_is_left_to_the_hive_and_a_node_without_gpus_serves_on_the_cpu(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            async with q.placement.worker_for(MODEL) as worker:
                return worker.backend, worker.device, [s["backend"] for s in hive.spawns]

    assert asyncio.run(scenario()) == ("cpu", None, ["auto"])


def test_an_explicit_cuda_request_is_never_placed_on_a_cpu_worker(tmp_path):
    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive) as q:
            hive.add_worker(MODEL, "idle", backend="cpu")
            return await refused(q.placement, backend="cuda"), hive.spawns

    err, spawns = asyncio.run(scenario())
    assert (err.status, err.code) == (400, "BACKEND_UNAVAILABLE")
    assert [s["backend"] for s in spawns] == ["cuda"]


def test_a_spawn_goes_to_the_node_with_the_most_free_gpu_memory(tmp_path):
    async def scenario():
        async with fake_hives(3) as (a, b, c), queen(tmp_path, remote={"a-node": a, "b-node": b,
                                                                        "c-node": c}) as q:
            b.gpus = [gpu(0, 4 * GIB), gpu(1, 6 * GIB)]
            c.gpus = [gpu(0, 12 * GIB)]
            async with q.placement.worker_for(MODEL) as worker:
                return q.placement.node_of(worker), worker.backend, [len(h.spawns) for h in (a, b, c)]

    assert asyncio.run(scenario()) == ("c-node", "cuda", [0, 0, 1])


def test_available_bytes_count_over_free_bytes_when_a_hive_reports_them(tmp_path):
    async def scenario():
        async with fake_hives(2) as (a, b), queen(tmp_path, remote={"a-node": a, "b-node": b}) as q:
            a.gpus = [{**gpu(0, 20 * GIB), "available_bytes": 1 * GIB}]
            b.gpus = [gpu(0, 8 * GIB)]
            async with q.placement.worker_for(MODEL) as worker:
                return q.placement.node_of(worker)

    assert asyncio.run(scenario()) == "b-node"


def test_an_auto_spawn_tries_nodes_without_gpus_last(tmp_path):
    async def scenario():
        async with fake_hives(2) as (a, b), queen(tmp_path, remote={"a-node": a, "b-node": b}) as q:
            b.gpus = [gpu(0, 1 * GIB)]
            async with q.placement.worker_for(MODEL) as worker:
                return q.placement.node_of(worker), worker.backend

    assert asyncio.run(scenario()) == ("b-node", "cuda")


def test_a_cuda_spawn_skips_nodes_without_gpus(tmp_path):
    async def scenario():
        async with fake_hives(2) as (a, b), queen(tmp_path, remote={"a-node": a, "b-node": b}) as q:
            b.gpus = [gpu(0, 1 * GIB)]
            b.refusal = ApiError(507, "INSUFFICIENT_VRAM", "too little GPU memory")
            return await refused(q.placement, backend="cuda"), a.spawns, len(b.spawns)

    err, spawns_on_a, spawns_on_b = asyncio.run(scenario())
    assert (err.status, err.code) == (507, "INSUFFICIENT_VRAM")
    assert (spawns_on_a, spawns_on_b) == ([], 1)


def test_a_cuda_request_with_no_gpu_on_any_node_is_400_backend_unavailable_and_spawns_nothing(tmp_path):
    async def scenario():
        async with fake_hives(2) as (a, b), queen(tmp_path, remote={"a-node": a, "b-node": b}) as q:
            return await refused(q.placement, backend="cuda"), a.spawns + b.spawns

    err, spawns = asyncio.run(scenario())
    assert (err.status, err.code) == (400, "BACKEND_UNAVAILABLE")
    assert "no node reports a GPU" in err.message
    assert spawns == []


def test_a_node_that_refuses_a_spawn_passes_it_to_the_next(tmp_path):
    async def scenario():
        async with fake_hives(2) as (a, b), queen(tmp_path, remote={"a-node": a, "b-node": b}) as q:
            a.gpus = [gpu(0, 16 * GIB)]
            a.refusal = ApiError(507, "INSUFFICIENT_VRAM", "too little GPU memory")
            b.gpus = [gpu(0, 8 * GIB)]
            async with q.placement.worker_for(MODEL, backend="cuda") as worker:
                return q.placement.node_of(worker), len(a.spawns), len(b.spawns)

    assert asyncio.run(scenario()) == ("b-node", 1, 1)


def test_when_every_node_refuses_the_client_gets_the_most_specific_refusal(tmp_path):
    async def scenario():
        async with fake_hives(2) as (a, b), queen(tmp_path, remote={"a-node": a, "b-node": b}) as q:
            a.gpus = [gpu(0, 16 * GIB)]
            a.refusal = ApiError(400, "BACKEND_UNAVAILABLE", "the engine has no CUDA")
            b.gpus = [gpu(0, 8 * GIB)]
            b.refusal = ApiError(507, "INSUFFICIENT_VRAM", "too little GPU memory", {"device": 0})
            return await refused(q.placement, backend="cuda")

    err = asyncio.run(scenario())
    assert (err.status, err.code, err.details) == (507, "INSUFFICIENT_VRAM", {"device": 0})


def test_a_request_naming_a_node_gets_that_nodes_refusal(tmp_path):
    async def scenario():
        async with fake_hives(2) as (local, far), queen(tmp_path, local=local, remote={"far": far}) as q:
            far.gpus = [gpu(0, 16 * GIB)]
            return await refused(q.placement, backend="cuda", node="localhost"), far.spawns

    err, spawns_far = asyncio.run(scenario())
    assert (err.status, err.code) == (400, "BACKEND_UNAVAILABLE")
    assert spawns_far == []


def test_a_model_whose_queue_keeps_waiting_gets_a_replica_on_another_node(tmp_path):
    limits = GpuLimits(max_replicas=2, replica_after_wait_s=0.05)

    async def scenario():
        async with fake_hives(2) as (a, b), queen(tmp_path, remote={"a-node": a, "b-node": b}, slots=1,
                                                   gpu=limits) as q:
            async with q.placement.worker_for(MODEL) as held:
                async with q.placement.worker_for(MODEL) as replica:
                    nodes = q.placement.node_of(held), q.placement.node_of(replica)
                    return *nodes, len(a.spawns), len(b.spawns)

    assert asyncio.run(scenario()) == ("a-node", "b-node", 1, 1)


def test_replicas_are_spawned_one_at_a_time_and_bounded_by_gpu_max_replicas(tmp_path):
    limits = GpuLimits(max_replicas=2, replica_after_wait_s=0.05)
    timings = Timings(admission_wait_max_s=2.5)

    async def scenario():
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive, slots=1, gpu=limits,
                                                   timings=timings) as q:
            hive.lists_while_loading = 5
            hive.add_worker(MODEL, "idle", slots=1)

            async def request() -> str:
                try:
                    async with q.placement.worker_for(MODEL) as worker:
                        await asyncio.sleep(4.0)
                        return worker.worker_id
                except ApiError as exc:
                    return exc.code

            answers = await asyncio.gather(*(request() for _ in range(4)))
            return answers, len(hive.spawns)

    answers, spawns = asyncio.run(scenario())
    assert spawns == 1
    served = [answer for answer in answers if answer != "QUEUE_TIMEOUT"]
    assert (len(served), len(set(served))) == (2, 2)


def test_with_the_default_limit_of_one_worker_a_waiting_queue_spawns_no_replica(tmp_path):
    async def scenario():
        limits, timings = GpuLimits(replica_after_wait_s=0.05), Timings(admission_wait_max_s=0.5)
        async with fake_hives(1) as (hive,), queen(tmp_path, local=hive, gpu=limits, timings=timings) as q:
            hive.add_worker(MODEL, "idle", slots=1)
            async with q.placement.worker_for(MODEL):
                return await refused(q.placement), hive.spawns

    err, spawns = asyncio.run(scenario())
    assert err.code == "QUEUE_TIMEOUT"
    assert spawns == []
