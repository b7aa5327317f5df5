"""The hive's VRAM estimate against what NVML shows once the worker has loaded.

Starts a hive, spawns one worker of each model given (backend cuda, `--slots` slots of
`--ctx-size` tokens), waits until it is idle, and prints the worker record's booked VRAM next to
the memory NVML attributes to the worker's process; then stops the hive (and so its workers).

Run (on a GPU node): python bench/vram_estimate.py MODEL.gguf [MODEL.gguf …] --slots 64 --ctx-size 1024
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rbee.testing.cluster import hive_daemon, http_json, wait_until
from rbee.testing.http_client import request

GIB = 1024**3


def _process_memory(pid: int) -> int:
    import pynvml

    pynvml.nvmlInit()
    try:
        used = 0
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            used += sum(p.usedGpuMemory or 0 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                        if p.pid == pid)
        return used
    finally:
        pynvml.nvmlShutdown()


def measure(model: Path, slots: int, ctx_size: int, workdir: Path) -> dict[str, object]:
    """One worker of `model`: its record's estimate and NVML's figure, in bytes."""
    hive = hive_daemon(workdir, ["--ctx-size", str(ctx_size)])
    hive.start()
    try:
        hive.wait_healthy(60)
        answer = request("POST", f"{hive.base_url}/v1/workers/spawn",
                         {"model": f"file://{model}", "slots": slots, "backend": "cuda"})
        assert answer.status == 202, answer
        worker_id = answer.json()["worker_id"]

        def record() -> dict:
            workers = http_json(f"{hive.base_url}/v1/workers/list")[1]["workers"]
            return next((w for w in workers if w["worker_id"] == worker_id), {})

        assert wait_until(lambda: record().get("state") == "idle", 300, 0.5), record()
        time.sleep(1)
        found = record()
        return {"model": model.name, "slots": slots, "ctx_size": ctx_size, "gpu_layers": found["gpu_layers"],
                "estimate_bytes": found["vram_required_bytes"], "nvml_bytes": _process_memory(found["pid"])}
    finally:
        hive.stop()


def main() -> int:
    """Measure each model given and print one JSON line and one table row per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--ctx-size", type=int, default=1024)
    args = parser.parse_args()
    print("| model | slots × ctx | estimate | NVML after load | estimate ÷ NVML |\n|---|---|---|---|---|")
    for model in args.models:
        with tempfile.TemporaryDirectory(prefix="rbee-vram-") as workdir:
            row = measure(model, args.slots, args.ctx_size, Path(workdir))
        ratio = row["estimate_bytes"] / max(1, row["nvml_bytes"])
        print(json.dumps(row), flush=True)
        print(f"| {row['model']} | {args.slots} × {args.ctx_size} | {row['estimate_bytes'] / GIB:.2f} GiB | "
              f"{row['nvml_bytes'] / GIB:.2f} GiB | {ratio:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
