"""The worker's info metric names its backend and GPU next to its id and model file."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rbee.common.auth import Keyring
from rbee.common.metrics import DaemonMetrics
from rbee.common.notify import Notifier
from rbee.common.tunables import Timings
from rbee.worker.faults import Faults
from rbee.worker.metrics import WorkerMetrics
from rbee.worker.runtime import WorkerRuntime
from rbee.worker.settings import WorkerSettings


def _info(backend: str, device: int | None) -> dict[str, str]:
    settings = WorkerSettings(
        worker_id="w-1", model_path="/srv/models/tiny.gguf", host="127.0.0.1", port=8081, slots=2,
        ctx_size=512, threads=None, hive_url=None, keyring=Keyring("worker", {"worker": None}),
        backend=backend, device=device)
    runtime = WorkerRuntime(settings, Timings(), Faults(), lambda: None, Notifier({}))
    base = DaemonMetrics("worker")
    WorkerMetrics(base, runtime)
    families = text_string_to_metric_families(generate_latest(base.registry).decode())
    [sample] = next(family for family in families if family.name == "rbee_worker_info").samples
    assert sample.value == 1
    return sample.labels


@pytest.mark.parametrize(("backend", "device", "shown"), [("cuda", 1, "1"), ("cpu", None, "")])
def test_the_info_metric_carries_backend_and_device(backend: str, device: int | None, shown: str) -> None:
    assert _info(backend, device) == {"worker_id": "w-1", "model": "tiny.gguf", "backend": backend,
                                      "device": shown}
