"""This process's environment, read in one place.

The options and tunables of a daemon are read by `config` and `tunables`; every other module that
needs a variable (systemd's `NOTIFY_SOCKET` and `CREDENTIALS_DIRECTORY`, `NOMAD_ADDR`, token
variables, fault injection) reads it from `environment()`. The XDG folders and `RBEE_DATA_DIR`,
which only give defaults, have a function each.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType


def environment() -> Mapping[str, str]:
    """This process's environment, read-only (changes made since show)."""
    return MappingProxyType(os.environ)


def default_data_dir() -> Path:
    """`$RBEE_DATA_DIR`, else `$XDG_DATA_HOME/rbee`, else `~/.local/share/rbee`."""
    if os.environ.get("RBEE_DATA_DIR"):
        return Path(os.environ["RBEE_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rbee"


def user_config_dir() -> Path:
    """`$XDG_CONFIG_HOME`, else `~/.config`: where a user's systemd manager reads units (`%E`)."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
