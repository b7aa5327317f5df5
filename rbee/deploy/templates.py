"""The unit and job templates shipped inside the package (`rbee/deploy/jobs/`, package data), read
through `importlib.resources`, so an installed wheel renders them as a source checkout does
(the checkout's top-level `jobs/` is a link to the same folder)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

JOBS = files("rbee.deploy") / "jobs"
SYSTEMD_DIR = JOBS / "systemd"
NOMAD_DIR = Path(str(JOBS / "nomad"))
"""The Nomad job files as a folder (rbee is installed as plain files, never zipped)."""


def systemd_template(name: str) -> str:
    """The text of one systemd unit template (OSError when the package lacks it)."""
    return (SYSTEMD_DIR / name).read_text()
