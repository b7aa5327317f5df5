"""`rbee deploy systemd --init-tokens`: create the token files the units need and that do not exist
yet (a fresh random token each, mode 0600, in a folder created 0700); existing files are kept as
they are and still checked like any other."""

from __future__ import annotations

from pathlib import Path

from rbee.common.secrets import ROLES, generate_token, write_token_file
from rbee.deploy.systemd_units import DeployError, UnitSettings


def init_missing_tokens(settings: UnitSettings) -> list[Path]:
    """Write a token file for each role whose file is missing; return the files created."""
    created = []
    for role in ROLES:
        path = settings.token_file(role)
        if path.exists():
            continue
        try:
            write_token_file(path, generate_token())
        except OSError as exc:
            raise DeployError("CANNOT_CREATE_TOKEN", f"cannot create {path}: {exc.strerror}") from None
        created.append(path)
    return created
