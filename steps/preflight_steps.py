"""Steps about the hive's resource preflight, backends and worker memory limits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from behave import given, then, when

from rbee.testing.cluster import hive_daemon, wait_until
from rbee.testing.http_client import request
from steps.cli_steps import _run
from steps.common import address_space_soft_limit, hive_workers, process_environment, started, tiny_ref

TIB = 1 << 40


@given('GET /v1/backends on the hive lists "{name}" as available and every backend with its detail')
@then('GET /v1/backends on the hive lists "{name}" as available and every backend with its detail')
def backends_listed(context, name: str) -> None:
    answer = request("GET", f"{context.hive_url}/v1/backends")
    assert answer.status == 200, answer.body
    found = {b["name"]: b for b in answer.json()["backends"]}
    assert set(found) == {"cpu", "cuda", "metal"}, found
    assert found[name]["available"] is True, found
    assert all(b["detail"] and isinstance(b["compiled"], bool) for b in found.values()), found


@then("GET /v1/resources on the hive reports RAM, disk and CPU figures")
def resources_listed(context) -> None:
    answer = request("GET", f"{context.hive_url}/v1/resources")
    assert answer.status == 200, answer.body
    body = answer.json()
    assert 0 < body["ram_available_bytes"] <= body["ram_total_bytes"], body
    assert 0 < body["disk_free_bytes"] <= body["disk_total_bytes"], body
    assert body["cpu_count"] >= 1 and isinstance(body["gpus"], list), body


@then('`rbee hive backends` prints "{name}" as available')
def cli_backends(context, name: str) -> None:
    result = subprocess.run([sys.executable, "-m", "rbee", "hive", "backends"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert " available " in lines[name] + " ", result.stdout


@given("a GGUF file of 1 TiB (sparse) with the tiny model's header")
def sparse_gguf(context) -> None:
    path = context.workdir / "huge.gguf"
    shutil.copyfile(context.tiny_model, path)
    os.truncate(path, TIB)
    context.huge_model = path


def _spawn(context, body: dict) -> None:
    context.answer = request("POST", f"{context.hive_url}/v1/workers/spawn", body)


@when("I ask the hive to spawn a worker for that file")
def spawn_huge(context) -> None:
    _spawn(context, {"model": f"file://{context.huge_model}"})


@when('I ask the hive to spawn a worker for the tiny model on backend "{backend}"')
def spawn_on_backend(context, backend: str) -> None:
    _spawn(context, {"model": tiny_ref(context), "backend": backend})


@then("the error details give at least 1 TiB required and the bytes available")
def details_with_figures(context) -> None:
    details = context.answer.json()["error"]["details"]
    assert details["required_bytes"] > details["available_bytes"] > 0, details
    assert details["required_bytes"] >= TIB, details


@then("the hive started no process")
def no_child(context) -> None:
    assert context.hive.descendants() == [], context.hive.descendants()


@when('I run rbee infer for the tiny model on backend "{backend}"')
def infer_on_backend(context, backend: str) -> None:
    _run(context, "--queen", context.queen_url, "--model", tiny_ref(context), "--prompt", "Hi",
         "--max-tokens", "4", "--backend", backend)


@then('its error output mentions "{text}"')
def stderr_mentions(context, text: str) -> None:
    assert text in context.result.stderr, context.result.stderr


@when("I start a worker for the tiny model with --backend cuda")
def worker_on_cuda(context) -> None:
    context.result = subprocess.run(
        [sys.executable, "-m", "rbee", "worker", "--model", str(context.tiny_model), "--port", "1",
         "--worker-id", "gpu-1", "--backend", "cuda"],
        capture_output=True, text=True, timeout=60, check=False,
    )


@then("the worker becomes idle within {seconds:d} seconds")
def worker_idle(context, seconds: int) -> None:
    def idle() -> bool:
        workers = hive_workers(context)
        return len(workers) == 1 and workers[0]["state"] == "idle"

    assert wait_until(idle, seconds, 0.1), hive_workers(context)
    context.worker_record = hive_workers(context)[0]
    context.worker_url = context.worker_record["url"]


@then("the worker's process has the address-space limit the hive lists for it")
def address_space_limit(context) -> None:
    record = context.worker_record
    soft = address_space_soft_limit(record["pid"])
    assert int(soft) == record["address_space_limit_bytes"] > 0, (soft, record)
    assert record["memory_required_bytes"] > 0, record


@when("I post an inference request to that worker")
def post_to_that_worker(context) -> None:
    context.answer = request("POST", f"{context.worker_url}/v1/inference", {"prompt": "Hi", "max_tokens": 2})


@then("the worker's log shows a MemoryError")
def memory_error_logged(context) -> None:
    logs = list((context.workdir / "hive-data" / "logs").glob("w-*.log"))
    assert any("MemoryError" in path.read_text() for path in logs), logs


@given("this node has no usable CUDA backend")
def no_cuda(context) -> None:
    from rbee.hive import backends

    if backends.get("cuda").available:
        context.scenario.skip("this node has a usable CUDA backend")


@given('a hive on free loopback ports started with "{flags}"')
def hive_with_flags(context, flags: str) -> None:
    context.hive = started(context, hive_daemon(context.workdir, flags.split()))
    context.hive_url = context.hive.base_url


@then('the error details name backend "{backend}" and node backend "{node}"')
def details_name_backends(context, backend: str, node: str) -> None:
    details = context.answer.json()["error"]["details"]
    assert (details["backend"], details["node_backend"]) == (backend, node), details


@then('the hive lists the worker on backend "{backend}" with no GPU')
def worker_without_gpu(context, backend: str) -> None:
    record = context.worker_record
    assert (record["backend"], record["device"], record["gpus"]) == (backend, None, []), record
    assert (record["gpu_layers"], record["vram_required_bytes"]) == (0, 0), record


@then("the worker's environment hides every GPU")
def gpus_hidden(context) -> None:
    environment = process_environment(context.worker_record["pid"])
    cuda = {name: value for name, value in environment.items() if "CUDA" in name}
    assert environment.get("CUDA_VISIBLE_DEVICES") == "", cuda
