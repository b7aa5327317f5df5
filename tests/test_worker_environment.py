"""How a worker process starts for its need: options, environment and address-space limit
(`launch_spec`), and a real child started with them."""

import asyncio
import json
import sys

from rbee.common import processes
from rbee.hive.gpu_fit import GpuShare, Placement
from rbee.hive.preflight import Need
from rbee.hive.supervisor import launch_spec

GIB = 1 << 30
CPU = Need(ram_bytes=GIB, disk_bytes=1, backend="cpu")


def cuda(*shares: GpuShare, layers: int = 19, split: tuple[float, ...] | None = None,
         mode: str = "none") -> Need:
    return Need(GIB, 1, "cuda", Placement(shares, layers, split), all_layers=19, split_mode=mode)


ONE = GpuShare(2, "GPU-aaaa", 4 * GIB)
TWO = (GpuShare(1, "GPU-bbbb", 6 * GIB), GpuShare(0, "GPU-cccc", 3 * GIB))


def test_a_cpu_worker_keeps_its_address_space_limit_and_sees_no_gpu():
    spec = launch_spec(CPU)
    assert spec.address_space_limit == CPU.address_space_limit > GIB
    assert spec.options == {} and spec.env == {"CUDA_VISIBLE_DEVICES": ""}


def test_a_cuda_worker_on_one_gpu_sees_only_that_gpu_by_uuid_with_no_limit_and_no_split():
    spec = launch_spec(cuda(ONE))
    assert spec.address_space_limit is None
    assert spec.env == {"CUDA_VISIBLE_DEVICES": "GPU-aaaa"}
    assert spec.options == {"backend": "cuda", "device": 0, "split_mode": "none"}


def test_a_split_worker_sees_its_gpus_in_tensor_split_order_with_the_nodes_split_mode():
    spec = launch_spec(cuda(*TWO, split=(0.667, 0.333), mode="row"))
    assert spec.env == {"CUDA_VISIBLE_DEVICES": "GPU-bbbb,GPU-cccc"}
    assert spec.options == {"backend": "cuda", "device": 0, "split_mode": "row",
                            "tensor_split": [0.667, 0.333]}
    assert spec.address_space_limit is None


def test_a_partial_offload_names_its_layer_count():
    spec = launch_spec(cuda(ONE, layers=7))
    assert spec.options["gpu_layers"] == 7
    assert "gpu_layers" not in launch_spec(cuda(ONE)).options


PROBE = ("import json, os, resource; print(json.dumps([os.environ.get('CUDA_VISIBLE_DEVICES'), "
         "resource.getrlimit(resource.RLIMIT_AS)[0]]))")


def _probe(tmp_path, need: Need) -> list:
    spec = launch_spec(need)

    async def run() -> None:
        child = await processes.spawn([sys.executable, "-c", PROBE], tmp_path / "probe.log",
                                      spec.address_space_limit, spec.env)
        await child.wait()

    asyncio.run(run())
    return json.loads((tmp_path / "probe.log").read_text())


def test_a_child_started_for_a_cuda_need_has_its_gpus_and_no_limit(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert _probe(tmp_path, cuda(*TWO, split=(0.5, 0.5))) == ["GPU-bbbb,GPU-cccc", -1]


def test_a_child_started_for_a_cpu_need_has_its_limit_and_no_gpus(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-of-the-hive")
    assert _probe(tmp_path, CPU) == ["", CPU.address_space_limit]
