"""`rbee deploy nomad` against a real Nomad agent: runs only when NOMAD_ADDR names one.

Point it at a throwaway agent (`nomad agent -dev` enables raw_exec) and, with ACLs on, set
NOMAD_TOKEN. The jobs are registered under names of their own (`rbee-queen-test-…`, with their
services renamed too), so a cluster already running rbee is not touched; both jobs are stopped
and purged at the end. rbee need not be installed on the agent: the test checks the
registration and the placement, not the tasks.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import nomad
import pytest

from rbee.deploy.nomad_check import JOBS_DIR

pytestmark = pytest.mark.skipif(not os.environ.get("NOMAD_ADDR"),
                                reason="needs a Nomad agent: set NOMAD_ADDR (and NOMAD_TOKEN with ACLs)")


SMALL_HIVE = {"default     = 4000": "default     = 200", "default     = 8192": "default     = 256",
              '        device "nvidia/gpu" {\n          count = var.gpus\n        }\n': ""}


def _renamed_jobs(folder: Path, suffix: str) -> list[str]:
    """Copies of the shipped jobs whose job and service names end in `suffix` (and whose hive asks
    for little CPU and memory and no GPU, to fit a dev agent); returns the job IDs."""
    names = []
    for path in sorted(JOBS_DIR.glob("*.nomad.hcl")):
        name = path.name.removesuffix(".nomad.hcl")
        text = path.read_text()
        for original in ("rbee-queen", "rbee-hive"):
            text = text.replace(f'"{original}"', f'"{original}-{suffix}"')
        if name == "rbee-hive":
            for old, new in SMALL_HIVE.items():
                assert old in text, old
                text = text.replace(old, new)
        (folder / f"{name}-{suffix}.nomad.hcl").write_text(text)
        names.append(f"{name}-{suffix}")
    return names


def test_deploy_registers_both_jobs_on_the_agent_then_they_are_stopped(tmp_path: Path) -> None:
    suffix = f"test-{uuid.uuid4().hex[:8]}"
    job_ids = _renamed_jobs(tmp_path, suffix)
    client = nomad.Nomad(address=os.environ["NOMAD_ADDR"].rstrip("/"), timeout=10)
    try:
        command = [sys.executable, "-m", "rbee", "deploy", "nomad", "--jobs-dir", str(tmp_path)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
        assert result.returncode == 0, result.stderr
        for job_id in job_ids:
            assert f"{job_id}: registered (evaluation " in result.stdout, result.stdout
            assert client.job.get_job(job_id)["ID"] == job_id
        assert client.job.get_job(f"rbee-hive-{suffix}")["Type"] == "system"
    finally:
        for job_id in job_ids:
            with contextlib.suppress(nomad.api.exceptions.URLNotFoundNomadException):
                client.job.deregister_job(job_id, purge=True)
    for job_id in job_ids:
        with pytest.raises(nomad.api.exceptions.URLNotFoundNomadException):
            client.job.get_job(job_id)
