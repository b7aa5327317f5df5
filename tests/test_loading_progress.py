"""The batch engine reports llama.cpp's own model-loading progress (its progress callback, once
per tensor) from the loading thread, and the `slow-load-step` fault slows each step."""

import asyncio
import threading
import time

from rbee.testing.tiny_model import build_tiny_gguf
from rbee.worker.batch_engine import BatchEngine
from rbee.worker.faults import ALLOW_ENV, FAULTS_ENV, Faults, load_faults
from rbee.worker.generation import LoadSpec


def test_loading_reports_several_rising_shares_from_the_loading_thread_up_to_the_whole_model(tmp_path):
    path = str(build_tiny_gguf(tmp_path / "tiny.gguf", context_length=256))
    seen: list[tuple[float, bool]] = []

    def report(share: float) -> None:
        seen.append((share, threading.current_thread() is threading.main_thread()))

    spec = LoadSpec(path, 1, 256, 1, on_progress=report)
    engine = asyncio.run(BatchEngine.load(spec, Faults(), lambda _: None))
    engine.shutdown()
    shares = [share for share, _ in seen]
    assert len(shares) >= 5, shares
    assert shares == sorted(shares) and shares[-1] == 1.0, shares
    assert not any(on_main for _, on_main in seen)


def test_the_slow_load_step_fault_sleeps_at_each_step():
    faults = load_faults({ALLOW_ENV: "1", FAULTS_ENV: "slow-load-step=30"})
    started = time.monotonic()
    faults.on_load_step()
    assert time.monotonic() - started >= 0.03
