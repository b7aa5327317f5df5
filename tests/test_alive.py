"""`alive`: a zombie a live process has not reaped counts as left behind; one of ours, or one handed to
init, does not."""

from __future__ import annotations

import subprocess
import sys

from rbee.testing.cluster import alive, wait_until

NEGLECTFUL_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "pass"])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_an_unreaped_grandchild_is_still_alive() -> None:
    parent = subprocess.Popen([sys.executable, "-c", NEGLECTFUL_PARENT], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(parent.stdout.readline())
        assert not wait_until(lambda: not alive(grandchild), 2.0), "an unreaped zombie counted as gone"
    finally:
        parent.kill()
        parent.wait()
    assert wait_until(lambda: not alive(grandchild), 5.0), "the orphaned zombie was never reaped"


def test_our_own_zombie_counts_as_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        assert wait_until(lambda: not alive(child.pid), 5.0)
    finally:
        child.wait()


def test_a_running_process_is_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not alive(child.pid)
