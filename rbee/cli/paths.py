"""Default locations on the operator's machine."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """`$RBEE_DATA_DIR`, else `$XDG_DATA_HOME/rbee`, else `~/.local/share/rbee`."""
    if os.environ.get("RBEE_DATA_DIR"):
        return Path(os.environ["RBEE_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rbee"
