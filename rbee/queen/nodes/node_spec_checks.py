"""Validation of a node's registration: SSH user, key file, absolute paths, ports."""

from __future__ import annotations

import os
import re
import stat
from pathlib import PurePosixPath
from typing import Any

from rbee.common.validation import MAX_PATH_CHARS, check_node_name, check_port, invalid
from rbee.queen.nodes.node_registry import DEFAULT_HIVE_PORT, DEFAULT_INSTALL_PATH, DEFAULT_SSH_PORT, NodeSpec

_SSH_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+@-]*$")


def _check_ssh_user(value: Any) -> str:
    if not isinstance(value, str) or not _SSH_USER.fullmatch(value):
        raise invalid("ssh_user", "must be a POSIX user name (lower-case letters, digits, '_', '-')")
    return value


def _check_abs_path(field_name: str, value: Any) -> str:
    """An absolute, normalised POSIX path without `..`, spaces or shell characters."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise invalid(field_name, "must be an absolute path")
    if len(value) > MAX_PATH_CHARS or not _SAFE_PATH.fullmatch(value):
        raise invalid(field_name, "must use only letters, digits and '_./+@-'")
    if ".." in PurePosixPath(value).parts or "//" in value:
        raise invalid(field_name, "must be normalised (no '..' or '//')")
    return value.rstrip("/") or "/"


def _check_key_file(value: Any) -> str:
    """The private key: an existing regular file on the queen's machine, not readable by others."""
    path = _check_abs_path("ssh_key", value)
    try:
        info = os.stat(path)
    except OSError:
        raise invalid("ssh_key", "must be an existing file on the queen's machine") from None
    if not stat.S_ISREG(info.st_mode):
        raise invalid("ssh_key", "must be a regular file")
    if info.st_mode & 0o077:
        raise invalid("ssh_key", "must not be readable by group or others (chmod 600)")
    return path


def parse_spec(body: dict[str, Any]) -> NodeSpec:
    """A validated NodeSpec from an add request."""
    return NodeSpec(
        name=check_node_name("name", body.get("name")),
        ssh_host=check_node_name("ssh_host", body.get("ssh_host")),
        ssh_port=check_port("ssh_port", body.get("ssh_port", DEFAULT_SSH_PORT)),
        ssh_user=_check_ssh_user(body.get("ssh_user")),
        ssh_key=_check_key_file(body.get("ssh_key")),
        install_path=_check_abs_path("install_path", body.get("install_path", DEFAULT_INSTALL_PATH)),
        hive_port=check_port("hive_port", body.get("hive_port", DEFAULT_HIVE_PORT)),
        hive_data_dir=_check_abs_path("hive_data_dir", data) if (data := body.get("hive_data_dir")) else "",
    )
