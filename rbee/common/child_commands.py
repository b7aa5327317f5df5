"""The command lines of the daemons rbee starts: `rbee hive …` (the queen's hives, here or over SSH)
and `rbee worker …` (a hive's workers).

A child's settings are the option model of its own config schema (`HiveOptions`, `WorkerOptions`),
so every flag is a key the child validates again; only the options given are written, in the
schema's order. Token files follow as flags of their own: paths only, never tokens.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel

from rbee.common.config_schema import HiveOptions, WorkerOptions, flag

LOCAL_RBEE = (sys.executable, "-m", "rbee")
"""rbee as this Python runs it: the program of the children on this machine."""


def _command(rbee: Sequence[str], daemon: str, options: BaseModel, tokens: Sequence[str]) -> list[str]:
    given = [key for key in type(options).model_fields if key in options.model_fields_set]
    return [*rbee, daemon, *(part for key in given for part in (flag(key), str(getattr(options, key)))),
            *tokens]


def hive_command(
    options: HiveOptions, tokens: Sequence[str] = (), rbee: Sequence[str] = LOCAL_RBEE
) -> list[str]:
    """`rbee hive` with `options` and the token-file flags `tokens`; `rbee` is the program (on a
    node over SSH, its `<install_path>/bin/rbee`)."""
    return _command(rbee, "hive", options, tokens)


def worker_command(options: WorkerOptions, tokens: Sequence[str] = ()) -> list[str]:
    """`rbee worker` (run by this Python) with `options` and the token-file flags `tokens`."""
    return _command(LOCAL_RBEE, "worker", options, tokens)


def token_flags(child: str, files: Mapping[str, Path | str | None]) -> list[str]:
    """The flags that give daemon `child` the token file of each role in `files` (None: no file):
    `--token-file` its own, `--<role>-token-file` those of the daemons it calls."""
    flags: list[str] = []
    for role, path in files.items():
        if path is not None:
            flags += [flag("token_file" if role == child else f"{role}_token_file"), str(path)]
    return flags
