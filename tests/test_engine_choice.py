"""Choosing a worker's engine: `--engine`, `RBEE_WORKER_ENGINE`, the batched default, and a clear
refusal of an unknown one; on real worker processes with the tiny model."""

import subprocess
import sys

import pytest

from rbee.testing.cluster import wait_until, worker_daemon
from rbee.testing.http_client import EventStream, request
from rbee.testing.tiny_model import build_tiny_gguf


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf")


def _serve_two_at_once(tmp_path, model, extra, env):
    worker = worker_daemon(tmp_path, model, slots=2, extra=extra)
    worker.start(env={"RBEE_WORKER_THREADS": "1", **env})
    try:
        worker.wait_healthy()
        assert wait_until(lambda: request("GET", f"{worker.base_url}/v1/ready").status == 200, 30)
        body = {"prompt": "Once upon a time", "max_tokens": 40, "ignore_eos": True}
        streams = [EventStream(f"{worker.base_url}/v1/inference", body).open() for _ in range(2)]
        ends = [stream.read_all()[-1] for stream in streams]
        outcomes = [(end["type"], end["tokens_out"], end["stop_reason"]) for end in ends]
        assert outcomes == [("end", 40, "max_tokens")] * 2
        return worker.log_path.read_text()
    finally:
        assert worker.stop() == []


@pytest.mark.parametrize(
    ("extra", "env", "engine"),
    [([], {}, "batched"), (["--engine", "simple"], {}, "simple"),
     ([], {"RBEE_WORKER_ENGINE": "simple"}, "simple"),
     (["--engine", "batched"], {"RBEE_WORKER_ENGINE": "simple"}, "batched")],
    ids=["default", "flag", "environment", "flag-over-environment"],
)
def test_the_chosen_engine_serves_two_requests_at_once(tmp_path, model, extra, env, engine):
    log = _serve_two_at_once(tmp_path, model, extra, env)
    assert f"ready with 2 slot(s), {engine} engine" in log


def test_an_unknown_engine_is_refused_with_a_clear_message(tmp_path, model):
    command = [sys.executable, "-m", "rbee", "worker", "--model", str(model), "--port", "1",
               "--worker-id", "w1", "--engine", "turbo"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "invalid choice: 'turbo'" in run.stderr
    run = subprocess.run(command[:-2], capture_output=True, text=True, timeout=60,
                         env={"RBEE_WORKER_ENGINE": "turbo", "PATH": ""})
    assert run.returncode == 1 and "RBEE_WORKER_ENGINE" in run.stderr and "Traceback" not in run.stderr
