"""Steps of the @gpu scenarios: what NVML itself (pynvml, not rbee's wrapper) shows of the
workers, their environment and limits, and the ledger's refusals."""

from __future__ import annotations

from behave import given, then, when

from rbee.testing.cluster import alive, wait_until
from rbee.testing.http_client import request
from steps.common import address_space_soft_limit, hive_workers, process_environment
from steps.eviction_steps import serve_first, stream_second

MIB = 1024 * 1024
DEFAULT_RESERVE_MIB = 512
"""gpu_reserve_mib's default, as docs/configuration.md gives it."""


def _nvml():  # type: ignore[no-untyped-def]
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def _gpus() -> list[dict]:
    """Every GPU NVML sees: index, UUID, memory in use, and the PIDs of its compute processes."""
    pynvml = _nvml()
    try:
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            found.append({
                "index": index,
                "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
                "used": pynvml.nvmlDeviceGetMemoryInfo(handle).used,
                "total": pynvml.nvmlDeviceGetMemoryInfo(handle).total,
                "pids": {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)},
            })
        return found
    finally:
        pynvml.nvmlShutdown()


@then("GET /v1/resources on the hive lists every GPU NVML sees with its UUID and memory")
def resources_list_gpus(context) -> None:
    answer = request("GET", f"{context.hive_url}/v1/resources")
    assert answer.status == 200, answer
    listed = {(g["index"], g["uuid"], g["total_bytes"]) for g in answer.json()["gpus"]}
    assert listed == {(g["index"], g["uuid"], g["total"]) for g in _gpus()}, listed


@given('the hive lists one worker on backend "{backend}" with a GPU')
@then('the hive lists one worker on backend "{backend}" with a GPU')
def worker_on_gpu(context, backend: str) -> None:
    workers = hive_workers(context)
    assert len(workers) == 1, workers
    record = context.worker_record = workers[0]
    assert record["backend"] == backend, record
    assert record["device"] is not None and record["gpus"], record
    uuids = {g["uuid"] for g in _gpus()}
    assert {g["uuid"] for g in record["gpus"]} <= uuids, (record, uuids)


@then("NVML shows the worker's process on its GPU and on no other")
def process_on_its_gpu(context) -> None:
    record = next(w for w in hive_workers(context) if w["worker_id"] == context.worker_record["worker_id"])
    own = {g["uuid"] for g in record["gpus"]}

    def placed() -> bool:
        gpus = _gpus()
        return all((record["pid"] in g["pids"]) == (g["uuid"] in own) for g in gpus)

    assert wait_until(placed, 30, 0.2), (record, _gpus())
    context.worker_record = record


@then("the worker's environment names its GPU's UUID in CUDA_VISIBLE_DEVICES")
def visible_devices_by_uuid(context) -> None:
    record = context.worker_record
    visible = process_environment(record["pid"]).get("CUDA_VISIBLE_DEVICES")
    assert visible == ",".join(g["uuid"] for g in record["gpus"]), (visible, record)


@then("the worker's process has no address-space limit")
def no_address_space_limit(context) -> None:
    record = context.worker_record
    soft = address_space_soft_limit(record["pid"])
    assert soft == "unlimited", soft
    assert record["address_space_limit_bytes"] is None, record


@then('the started event names backend "{backend}" and a device index')
def started_names_gpu(context, backend: str) -> None:
    first = context.stream.events[0]
    assert first["type"] == "started", first
    assert first["backend"] == backend and isinstance(first["device"], int), first


@when('I ask the hive to spawn a worker for that file on backend "{backend}"')
def spawn_huge_on(context, backend: str) -> None:
    context.answer = request("POST", f"{context.hive_url}/v1/workers/spawn",
                             {"model": f"file://{context.huge_model}", "backend": backend})


@then("the error details give the bytes the GPU lacks")
def vram_details(context) -> None:
    details = context.answer.json()["error"]["details"]
    assert details["required_bytes"] > details["available_bytes"] >= 0, details
    total = max(g["total"] for g in _gpus())
    assert details["available_bytes"] <= total, details


@given("the GPU memory in use is noted")
def note_gpu_memory(context) -> None:
    context.gpu_used_before = {g["uuid"]: g["used"] for g in _gpus()}


@when("I ask the hive to stop the worker")
def stop_worker(context) -> None:
    answer = request("POST", f"{context.hive_url}/v1/workers/stop",
                     {"worker_id": context.worker_record["worker_id"]})
    assert answer.status == 202, answer
    context.workers = [context.worker_record]


@then("NVML shows no process of the worker and the GPU memory in use is back within {mib:d} MiB")
def memory_freed(context, mib: int) -> None:
    pid = context.worker_record["pid"]
    assert not alive(pid), pid

    def freed() -> bool:
        gpus = _gpus()
        return all(pid not in g["pids"] and g["used"] - context.gpu_used_before[g["uuid"]] <= mib * MIB
                   for g in gpus)

    assert wait_until(freed, 30, 0.2), (_gpus(), context.gpu_used_before)


@given('a task of the tiny model on backend "{backend}" has been served through the queen')
def first_served_on(context, backend: str) -> None:
    serve_first(context, backend=backend)


@given("the hive's only worker is on the GPU and its VRAM booking fits the budget once, not twice")
def vram_premise(context) -> None:
    workers = hive_workers(context)
    assert len(workers) == 1 and workers[0]["backend"] == "cuda", workers
    room = (int(context.env["RBEE_GPU_VRAM_BUDGET_MIB"]) - DEFAULT_RESERVE_MIB) * MIB
    need = workers[0]["vram_required_bytes"]
    assert need <= room < 2 * need, (need, room)


@when('a task of the second model on backend "{backend}" streams through the queen')
def second_streams_on(context, backend: str) -> None:
    stream_second(context, backend=backend)
    context.worker_record = hive_workers(context)[0]


@then("NVML shows no process of the first worker")
def first_worker_gone_from_gpu(context) -> None:
    pid = context.first_worker_pid
    assert not alive(pid), pid
    assert wait_until(lambda: all(pid not in g["pids"] for g in _gpus()), 30, 0.2), _gpus()
